"""A real 2-process DistributedDataParallel run (gloo, CPU) of both training loops.

Two processes are spawned with torchrun's environment variables (RANK, WORLD_SIZE, MASTER_ADDR...),
each runs the same `train_vqvae` then `train_priors` call (with condition dropout) a user's torchrun
job would make, and dumps its final weights and buffers. The ranks must end bit-identical: the gradients are all-reduced
by DDP and the EMA codebooks by the quantiser.
"""
from __future__ import annotations

import faulthandler
import os
import socket
import sys

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, corpus: str, cache: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NOTONO_NO_PROGRESS="1")
    torch.set_num_threads(1)
    faulthandler.dump_traceback_later(180, exit=True, file=sys.stderr)  # fail, never hang
    import torch.distributed as dist
    from safetensors.torch import save_file

    # one process group for both loops, as a script running several loops in one job would do
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    from notono_live.training.priors import PriorsTrainConfig, train_priors
    from notono_live.training.vqvae import VQVAETrainConfig, train_vqvae

    # every optimiser's parameters just before its first step and just after its last one
    before, after = {}, {}

    def flat(optimizer):
        return torch.cat([p.detach().flatten().clone() for g in optimizer.param_groups for p in g["params"]])

    def pre_step(optimizer, args, kwargs):
        if id(optimizer) not in before:
            before[id(optimizer)] = flat(optimizer)

    register_optimizer_step_pre_hook(pre_step)
    register_optimizer_step_post_hook(lambda optimizer, args, kwargs: after.__setitem__(id(optimizer), flat(optimizer)))

    vqvae = train_vqvae(VQVAETrainConfig(corpus=corpus, out=f"{out}/vqvae", size="tiny", max_steps=2, batch_size=2,
                                         device="cpu", cache=cache, validation_notes=0))
    priors = train_priors(PriorsTrainConfig(corpus=corpus, vqvae=f"{out}/vqvae", out=f"{out}/priors", size="tiny",
                                            max_steps=2, batch_size=4, device="cpu", cache=cache, validation_maps=0,
                                            condition_dropout=0.5))
    tensors = {}
    for result in (vqvae, priors):
        for name, module in result.models.items():
            tensors.update({f"{name}.{key}": value.detach().contiguous().clone()
                            for key, value in module.state_dict().items()})
    tensors["notes_seen"] = torch.tensor([vqvae.summary.notes_seen, priors.summary.notes_seen])
    tensors["optimizers_moved"] = torch.tensor([not torch.equal(before[key], after[key]) for key in before])
    save_file(tensors, f"{out}/rank{rank}.safetensors")
    dist.destroy_process_group()


def test_two_process_ddp_keeps_ranks_identical(tmp_path, small_corpus, spectrogram_cache):
    from safetensors.torch import load_file

    mp.start_processes(_worker, args=(2, _free_port(), str(small_corpus), str(spectrogram_cache), str(tmp_path)),
                       nprocs=2, join=True, start_method="spawn")
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    codebooks = [key for key in ranks[0] if key.endswith(".embed")]
    assert len(codebooks) == 2                                   # top and bottom EMA codebooks
    # condition dropout gave both priors the unconditioned input, and DDP kept it in step too
    assert {key for key in ranks[0] if "null_condition" in key} == {
        "top_prior.null_condition.weight", "bottom_prior.null_condition.weight"}
    different = [key for key in ranks[0] if not torch.equal(ranks[0][key], ranks[1][key])]
    assert different == []
    # each rank saw its own share: the job counts both ranks' notes
    assert ranks[0]["notes_seen"].tolist() == [2 * 2 * 2, 2 * 4 * 2]
    # the weights moved: every optimiser (the VQ-VAE's and the priors') changed its parameters
    # between just before its first step and just after its last one
    moved = ranks[0]["optimizers_moved"].tolist()
    assert len(moved) == 3 and all(moved), moved   # the VQ-VAE, the top prior, the bottom prior
    # rank 0 wrote the checkpoints; both runs can be resumed
    assert (tmp_path / "vqvae" / "checkpoint" / "training_state.safetensors").is_file()
    assert (tmp_path / "priors" / "checkpoint" / "training_state.safetensors").is_file()
