// NOTONO Live: the codemap grid of the device view (jsui, MGraphics, classic Max `js` engine, ES5).
//
// Draws the current sound's spectrogram image (a PNG written by the daemon) under a grid of the
// top map (32 rows x 4 columns) or the bottom map (64 x 8), with frequency row 0 at the bottom,
// and the selected region on top. Click and drag selects a rectangle of cells; on release it
// sends "region <col> <row> <width> <height>" to notono.js, which owns the state and sends back
// "setlayer", "setregion" and "spectrogram" messages. The cell arithmetic lives in plain
// functions so that the tests can run it under Node.

inlets = 1;
outlets = 1;
autowatch = 0;

mgraphics.init();
mgraphics.relative_coords = 0;
mgraphics.autofill = 0;

var LAYER_SHAPES = { top: [32, 4], bottom: [64, 8] };   // [rows, columns], constants.TOP/BOTTOM_SHAPE

var gridLayer = "top";
var gridRegion = [0, 0, 1, 1];      // col, row, width, height
var dragAnchor = null;              // [col, row] where the mouse went down
var picture = null;
var picturePath = "";

function shapeOf(layerName) {
    var shape = LAYER_SHAPES[layerName];
    if (!shape) {
        throw new Error("unknown layer " + layerName + "; expected top or bottom");
    }
    return shape;
}

// The cell under a point of a view of size width x height; row 0 is drawn at the bottom.
function cellAt(x, y, width, height, layerName) {
    var shape = shapeOf(layerName);
    var rows = shape[0], cols = shape[1];
    var col = Math.floor(x / (width / cols));
    var rowFromTop = Math.floor(y / (height / rows));
    col = Math.max(0, Math.min(cols - 1, col));
    rowFromTop = Math.max(0, Math.min(rows - 1, rowFromTop));
    return [col, rows - 1 - rowFromTop];
}

// The rectangle spanned by two cells, as [col, row, width, height].
function regionBetween(a, b) {
    var col = Math.min(a[0], b[0]);
    var row = Math.min(a[1], b[1]);
    return [col, row, Math.abs(a[0] - b[0]) + 1, Math.abs(a[1] - b[1]) + 1];
}

function viewSize() {
    var size = mgraphics.size;
    return [size[0], size[1]];
}

function paint() {
    var size = viewSize();
    var w = size[0], h = size[1];
    var shape = shapeOf(gridLayer);
    var rows = shape[0], cols = shape[1];
    var cellW = w / cols, cellH = h / rows;
    var r, c;

    mgraphics.set_source_rgba(0.09, 0.09, 0.1, 1.0);
    mgraphics.rectangle(0, 0, w, h);
    mgraphics.fill();

    if (picture && picture.size[0] > 0 && picture.size[1] > 0) {
        // The daemon's PNG has the lowest frequency at the bottom, like the grid.
        mgraphics.save();
        mgraphics.scale(w / picture.size[0], h / picture.size[1]);
        mgraphics.image_surface_draw(picture);
        mgraphics.restore();
    }

    // Grid lines: every cell boundary, faint; time columns stronger.
    mgraphics.set_line_width(1.0);
    mgraphics.set_source_rgba(1.0, 1.0, 1.0, 0.12);
    for (r = 1; r < rows; r++) {
        mgraphics.move_to(0, r * cellH);
        mgraphics.line_to(w, r * cellH);
    }
    mgraphics.stroke();
    mgraphics.set_source_rgba(1.0, 1.0, 1.0, 0.35);
    for (c = 1; c < cols; c++) {
        mgraphics.move_to(c * cellW, 0);
        mgraphics.line_to(c * cellW, h);
    }
    mgraphics.stroke();

    // Selected region: row 0 at the bottom, so its top edge is rows - (row + height).
    var x = gridRegion[0] * cellW;
    var y = (rows - gridRegion[1] - gridRegion[3]) * cellH;
    mgraphics.set_source_rgba(1.0, 0.62, 0.1, 0.25);
    mgraphics.rectangle(x, y, gridRegion[2] * cellW, gridRegion[3] * cellH);
    mgraphics.fill();
    mgraphics.set_source_rgba(1.0, 0.62, 0.1, 1.0);
    mgraphics.set_line_width(2.0);
    mgraphics.rectangle(x + 1, y + 1, gridRegion[2] * cellW - 2, gridRegion[3] * cellH - 2);
    mgraphics.stroke();
}

function onclick(x, y) {
    var size = viewSize();
    dragAnchor = cellAt(x, y, size[0], size[1], gridLayer);
    gridRegion = regionBetween(dragAnchor, dragAnchor);
    mgraphics.redraw();
}

function ondrag(x, y, button) {
    if (!dragAnchor) {
        return;
    }
    var size = viewSize();
    gridRegion = regionBetween(dragAnchor, cellAt(x, y, size[0], size[1], gridLayer));
    mgraphics.redraw();
    if (!button) {   // mouse released: the selection is final
        dragAnchor = null;
        outlet(0, "region", gridRegion[0], gridRegion[1], gridRegion[2], gridRegion[3]);
    }
}

function setlayer(name) {
    shapeOf(name);
    gridLayer = name;
    mgraphics.redraw();
}

function setregion(col, row, width, height) {
    gridRegion = [col, row, width, height];
    mgraphics.redraw();
}

function spectrogram(path) {
    // An empty path clears the picture (no current sound).
    if (!path) {
        picture = null;
        picturePath = "";
    } else {
        // A file Max cannot read gives an image of size 0 x 0: drop it and keep drawing the grid.
        var image = new Image(path);
        var readable = image && image.size && image.size[0] > 0 && image.size[1] > 0;
        picture = readable ? image : null;
        picturePath = readable ? path : "";
        if (!readable) {
            post("NOTONO Live: cannot read the spectrogram " + path + "\n");
        }
    }
    mgraphics.redraw();
}

// Max calls any global function whose name arrives as a message; these are internal only.
[shapeOf, cellAt, regionBetween, viewSize].forEach(function (f) {
    f.local = 1;
});
