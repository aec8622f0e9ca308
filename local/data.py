"""Datasets and the Lightning DataModule over the standard corpus layout.

The layout is asteroid's wsj0-mix one (see ``local.metadata``):
``<corpus_dir>/wav{8k,16k}/{min,max}/{tr,cv,tt}/{mix,s1,s2}.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import functools
import logging
import os
import time

import numpy as np
import pytorch_lightning as pl
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchaudio.transforms import Resample

from local.metadata import REINDEX_HINT, CorpusChanged, read_split_metadata, source_speakers

log = logging.getLogger("local.data")


def split_dir(corpus_dir: str | Path, data_conf: dict, split: str) -> Path:
    """``data/<corpus>`` + config -> ``data/<corpus>/wav8k/min/<split>``."""
    from local.metadata import split_path

    return split_path(corpus_dir, data_conf["sample_rate"], data_conf["mode"], split)


def _unreadable(path: str, err: Exception) -> Exception:
    """The one-line error for a corpus file libsndfile could not open (instead of libsndfile's text).

    The metadata was checked when the split was loaded, so a file that is gone
    now was deleted or moved under the running stage.
    """
    if not os.path.exists(path):
        return CorpusChanged(f"{path} is gone: the corpus changed under this run (deleted or moved after its "
                             f"metadata was read); {REINDEX_HINT}, then run this stage again")
    return ValueError(f"{path}: cannot read audio ({err}): the corpus file is damaged; rebuild the corpus "
                      "(./run.sh --stage 0 --stop-stage 0 --force)")


def _read(path: str, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """Samples ``start:stop`` of a corpus file; see :func:`_unreadable` for the errors."""
    try:
        data, _ = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=False)
    except (RuntimeError, OSError) as err:  # soundfile's LibsndfileError is a RuntimeError
        raise _unreadable(path, err) from None
    return data


def _read_compact(path: str) -> np.ndarray:
    """A whole corpus file in its smallest exact form: 16-bit PCM stays int16 (half of float32)."""
    try:
        with sf.SoundFile(path) as f:
            return f.read(dtype="int16" if f.subtype == "PCM_16" else "float32", always_2d=False)
    except (RuntimeError, OSError) as err:
        raise _unreadable(path, err) from None


def _as_float32(samples: np.ndarray) -> np.ndarray:
    """What ``soundfile`` returns as float32 for these samples: int16 scaled by 1/32768 (exact)."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) * np.float32(1.0 / 32768)
    return samples


class MixtureDataset(Dataset):
    """Mixtures and their reference sources from one split folder.

    Args:
        split_path: folder holding ``mix.json``, ``s1.json`` ...
        n_src: number of sources.
        segment: crop length in seconds, or ``None`` for whole utterances.
        sample_rate: expected rate of every file (checked on the first item).
        min_segment: utterances shorter than this (seconds) are dropped; ones
            between ``min_segment`` and ``segment`` are zero-padded, which keeps
            short corpora (such as the demo) usable with long crops.
        random_crop: random crop position (training) or the start (validation).
        return_name: also return the utterance name (evaluation).
    """

    def __init__(
        self,
        split_path: str | Path,
        n_src: int,
        sample_rate: int,
        segment: Optional[float] = None,
        min_segment: Optional[float] = None,
        random_crop: bool = True,
        return_name: bool = False,
    ):
        self.split_path = Path(split_path)
        self.n_src = n_src
        self.sample_rate = sample_rate
        self.seg_len = None if segment is None else int(round(segment * sample_rate))
        min_len = 0 if min_segment is None else int(round(min_segment * sample_rate))
        items = read_split_metadata(self.split_path, n_src)
        self.items = [it for it in items if it["n_samples"] >= min_len]
        self.n_dropped = len(items) - len(self.items)
        if not self.items:
            raise ValueError(
                f"{self.split_path}: no utterance is at least {min_segment} s long; "
                "lower data.min_segment"
            )
        self.random_crop = random_crop
        self.return_name = return_name
        self._rate_checked = False

    def __len__(self) -> int:
        return len(self.items)

    def _check_rate(self, path: str) -> None:
        if self._rate_checked:
            return
        try:
            rate = sf.info(path).samplerate
        except (RuntimeError, OSError) as err:
            raise _unreadable(path, err) from None
        if rate != self.sample_rate:
            raise ValueError(
                f"{path} is sampled at {rate} Hz but the config says data.sample_rate="
                f"{self.sample_rate}"
            )
        self._rate_checked = True

    def __getitem__(self, idx: int):
        item = self.items[idx]
        self._check_rate(item["mix"])
        n = item["n_samples"]
        start, stop = 0, None
        if self.seg_len is not None and n > self.seg_len:
            start = int(np.random.randint(0, n - self.seg_len + 1)) if self.random_crop else 0
            stop = start + self.seg_len
        mix = _read(item["mix"], start, stop)
        sources = np.stack([_read(p, start, stop) for p in item["sources"]])
        if self.seg_len is not None and mix.shape[-1] < self.seg_len:
            pad = self.seg_len - mix.shape[-1]
            mix = np.pad(mix, (0, pad))
            sources = np.pad(sources, ((0, 0), (0, pad)))
        mix_t, src_t = torch.from_numpy(mix), torch.from_numpy(sources)
        if self.return_name:
            return mix_t, src_t, item["name"]
        return mix_t, src_t


class DynamicMixingDataset(Dataset):
    """Training mixtures made on the fly from the split's reference sources.

    Each item draws ``n_src`` source files of the split, each of a different
    speaker (and so from different files), crops each at random, applies a
    random relative level in ``[-snr_range, snr_range]`` dB and sums them, so
    every epoch sees new mixtures. The sources are read as written by the
    mixing stage (already at P.56 active level times their list SNR);
    remixing them keeps the corpus's level statistics.

    Who speaks in a source file: the split's mixtures are named
    ``<utt1>_<snr1>_<utt2>_<snr2>[...]`` (wsj0-2mix and the demo corpus) and
    ``s<k>`` holds the k-th utterance of the name, whose speaker is
    :func:`local.metadata.speaker_of` it (WSJ0: its first 3 characters; demo:
    the part before ``_``). When some mixture name of the split does not parse
    that way (LibriMix, other corpora), speakers are unknown and the draw
    falls back to sources from different mixtures and different file paths,
    which can still pair one speaker with itself (``self.by_speaker`` says
    which rule is in use). Each source is drawn uniformly among the split's
    source files that the ones drawn before it allow.

    Seeding: item ``key`` is drawn from its own generator,
    ``numpy.random.default_rng([seed, key])``, never from a global one. The
    training loader feeds it keys from :class:`EpochKeySampler`
    (``key = epoch * len(self) + index``, the indices split between DDP ranks),
    so every (epoch, rank, position) gets a different mixture, the mixtures do
    not depend on the number of data-loader workers, and a resumed run makes
    the same mixtures for an epoch as an uninterrupted one.

    Speed perturbation (``speed_range`` > 0): each source is played faster or
    slower by a factor drawn uniformly from ``1 +- speed_range`` (on a grid of
    1/100), resampled with torchaudio. That moves its pitch and every formant
    together, as a different vocal-tract length would, so the network meets
    more timbres than the corpus has speakers.

    ``cache_sources``: every source file is kept in memory (16-bit PCM as int16),
    so a crop is a slice instead of a file read. The crops are the same samples
    either way; on the demo corpus a batch of 16 is made in 12.4 instead of 20.7 ms
    (``benchmarks/benchmark_data.py``). :meth:`fill_cache` reads them all at once
    (the data module does, before training, so that the step rate a time budget
    measures in the first steps is the rate of the whole run); otherwise each file
    is kept when first read. The cache holds the split's source audio (the demo's
    12000 sources: 461 MB); data-loader workers forked after the fill share it.
    """

    def __init__(
        self,
        split_path: str | Path,
        n_src: int,
        sample_rate: int,
        segment: float,
        min_segment: float,
        snr_range: float = 2.5,
        epoch_size: Optional[int] = None,
        seed: int = 0,
        speed_range: float = 0.0,
        cache_sources: bool = False,
    ):
        if not 0.0 <= speed_range < 0.5:
            raise ValueError(f"data.dm_speed_range={speed_range} must be in [0, 0.5)")
        base = MixtureDataset(split_path, n_src, sample_rate, segment, min_segment)
        self.sources = [(p, it["n_samples"]) for it in base.items for p in it["sources"]]
        self.n_src = n_src
        self._group, self._file, self.by_speaker = _source_groups(base.items, n_src)
        n_groups = int(self._group.max()) + 1
        if n_groups < n_src:
            raise ValueError(f"{split_path}: dynamic mixing needs sources of {n_src} different "
                             f"{'speakers' if self.by_speaker else 'mixtures'}, the split has {n_groups}; "
                             "set data.dynamic_mixing=false")
        self.seg_len = base.seg_len
        self.snr_range = snr_range
        self.speed_range = speed_range
        self._resamplers: dict[int, Resample] = {}  # filled lazily, per data-loader worker
        self._cache: Optional[dict[str, np.ndarray]] = {} if cache_sources else None  # likewise
        self.epoch_size = epoch_size or len(base.items)
        self.seed = seed

    def __len__(self) -> int:
        return self.epoch_size

    def _draw_sources(self, rng: np.random.Generator) -> list[int]:
        """``n_src`` indices into ``self.sources``, each of another speaker (or mixture) and file."""
        allowed = np.ones(len(self.sources), dtype=bool)
        picks = []
        for _ in range(self.n_src):
            candidates = np.flatnonzero(allowed)
            if candidates.size == 0:  # only with a degenerate split (one path listed in many mixtures)
                raise ValueError("dynamic mixing: no source left that differs in speaker/mixture and file from "
                                 f"{[self.sources[i][0] for i in picks]}")
            pick = int(candidates[rng.integers(candidates.size)])
            picks.append(pick)
            allowed &= (self._group != self._group[pick]) & (self._file != self._file[pick])
        return picks

    def fill_cache(self) -> tuple[int, int]:
        """Read every source file into the cache (``cache_sources``); returns (files, bytes) held."""
        if self._cache is None:
            raise ValueError("fill_cache: this dataset was made with cache_sources=False")
        for path, _ in self.sources:
            if path not in self._cache:
                self._cache[path] = _read_compact(path)
        return len(self._cache), sum(a.nbytes for a in self._cache.values())

    def _samples(self, path: str, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Samples ``start:stop`` of a source file, from the cache when it is kept."""
        if self._cache is None:
            return _read(path, start, stop)
        whole = self._cache.get(path)
        if whole is None:
            whole = self._cache[path] = _read_compact(path)
        return _as_float32(whole[start:stop])

    def _crop(self, rng: np.random.Generator, path: str, n: int, length: int) -> np.ndarray:
        if n > length:
            start = int(rng.integers(0, n - length + 1))
            return self._samples(path, start, start + length)
        return np.pad(self._samples(path), (0, length - n))

    def _resampler(self, percent: int) -> Resample:
        """torchaudio's resampler percent -> 100, its sinc kernel computed once per factor (and worker)."""
        if percent not in self._resamplers:
            self._resamplers[percent] = Resample(percent, 100)
        return self._resamplers[percent]

    def _source(self, rng: np.random.Generator, path: str, n: int, percent: int) -> np.ndarray:
        """A ``seg_len`` crop of one source played at ``percent``/100 of its speed."""
        if percent == 100:
            return self._crop(rng, path, n, self.seg_len)
        # Read enough input for seg_len output samples, then resample percent -> 100.
        crop = self._crop(rng, path, n, -(-self.seg_len * percent // 100))
        with torch.inference_mode():  # no autograd bookkeeping: 15-20% of the resampler's time on 1 s
            out = self._resampler(percent)(torch.from_numpy(crop)).numpy()
        return np.pad(out, (0, max(0, self.seg_len - out.size)))[: self.seg_len]

    def __getitem__(self, key: int):
        rng = np.random.default_rng([self.seed, int(key)])
        picks = self._draw_sources(rng)
        percents = [100] * self.n_src
        if self.speed_range > 0:
            spread = int(round(100 * self.speed_range))
            percents = rng.integers(100 - spread, 100 + spread + 1, size=self.n_src).tolist()
        sources = np.stack([self._source(rng, *self.sources[i], percent)
                            for i, percent in zip(picks, percents)])
        gains_db = rng.uniform(-self.snr_range, self.snr_range, size=self.n_src)
        gains_db -= gains_db.mean()
        sources = sources * (10.0 ** (gains_db / 20.0))[:, None]
        mix = sources.sum(0)
        peak = max(np.abs(mix).max(), np.abs(sources).max(), 1e-8)
        if peak > 0.9:  # keep the corpus's 0.9 full-scale ceiling
            mix, sources = mix * (0.9 / peak), sources * (0.9 / peak)
        return torch.from_numpy(mix.astype(np.float32)), torch.from_numpy(sources.astype(np.float32))


def _source_groups(items: list[dict], n_src: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per source of ``items`` (in order): a group code, a file code, and whether groups are speakers.

    Groups are speakers when every mixture name tells its sources' speakers
    (:func:`local.metadata.source_speakers`), else mixtures.
    """
    speakers = [source_speakers(it["name"], n_src) for it in items]
    by_speaker = all(spks is not None for spks in speakers)
    if by_speaker:
        groups = [spk for spks in speakers for spk in spks]
    else:
        groups = [str(i) for i, it in enumerate(items) for _ in it["sources"]]
    files = [os.path.normpath(p) for it in items for p in it["sources"]]
    return np.unique(groups, return_inverse=True)[1], np.unique(files, return_inverse=True)[1], by_speaker


class EpochKeySampler(DistributedSampler):
    """A ``DistributedSampler`` whose indices carry the epoch: ``epoch * len(dataset) + index``.

    Lightning calls ``set_epoch`` on it at every epoch start (also after a
    resume) and leaves it in place under DDP (it already is a distributed
    sampler), so each rank draws its own share of a new permutation every epoch.
    Used with :class:`DynamicMixingDataset`, whose items are seeded by key.
    """

    def __iter__(self):
        offset = self.epoch * len(self.dataset)
        return (offset + i for i in super().__iter__())


def _seed_worker(worker_id: int, rank: int = 0) -> None:
    # numpy's global generator is copied into each worker; reseed it from torch's
    # per-worker seed (different per worker, reproducible) and the DDP rank (torch's
    # base seed is the same on every rank after seed_everything) so random crops
    # differ between workers and ranks.
    np.random.seed(np.random.SeedSequence([torch.initial_seed() % 2**32, rank]).generate_state(1)[0])


class SeparationDataModule(pl.LightningDataModule):
    """Train/valid/test loaders for one corpus folder and the ``data`` config section.

    ``prepare_data`` has nothing to do: corpora are made by ``egs/<corpus>``
    in the data-preparation stage, before training starts.

    Randomness: training crops (and, with ``data.dynamic_mixing``, the
    mixtures) are random but seeded by ``seed`` (``training.seed``), the DDP
    rank, the worker and the epoch; validation always reads the same fixed
    crops in the same order, so ``val_loss`` is comparable between epochs and
    between runs. Dynamic mixing never touches validation or test.
    """

    def __init__(self, corpus_dir: str | Path, data_conf: dict, seed: int = 0):
        super().__init__()
        self.corpus_dir = Path(corpus_dir)
        self.conf = dict(data_conf)
        self.seed = seed
        self.train_set: Optional[Dataset] = None
        self.valid_set: Optional[Dataset] = None

    def _dir(self, split: str) -> Path:
        path = split_dir(self.corpus_dir, self.conf, split)
        if not (path / "mix.json").is_file():
            raise FileNotFoundError(
                f"{path / 'mix.json'} not found: run data preparation first "
                "(./run.sh --stage 0 --stop-stage 0) or check --corpus/--data-dir and "
                "data.sample_rate/data.mode in the config"
            )
        return path

    def setup(self, stage: Optional[str] = None) -> None:
        c = self.conf
        if stage in (None, "fit"):
            if c["dynamic_mixing"]:
                # Lightning calls setup again in fit: a filled cache is kept, not read twice.
                if not (c["cache_sources"] and isinstance(self.train_set, DynamicMixingDataset)):
                    self.train_set = self._dynamic_mixing_set()
            else:
                self.train_set = MixtureDataset(
                    self._dir(c["train_set"]), c["n_src"], c["sample_rate"],
                    c["segment"], c["min_segment"], random_crop=True,
                )
        if stage in (None, "fit", "validate"):
            # Validation uses fixed crops (the start of each utterance) so that
            # val_loss is comparable between epochs.
            self.valid_set = MixtureDataset(
                self._dir(c["valid_set"]), c["n_src"], c["sample_rate"],
                c["segment"], c["min_segment"], random_crop=False,
            )

    def _dynamic_mixing_set(self) -> DynamicMixingDataset:
        c = self.conf
        dataset = DynamicMixingDataset(
            self._dir(c["train_set"]), c["n_src"], c["sample_rate"], c["segment"], c["min_segment"],
            c["dm_snr_range"], seed=self.seed, speed_range=c["dm_speed_range"], cache_sources=c["cache_sources"],
        )
        if c["cache_sources"]:
            start = time.perf_counter()
            files, size = dataset.fill_cache()
            log.info("data.cache_sources: %d training source files kept in memory (%.0f MB), read in %.1f s",
                     files, size / 1e6, time.perf_counter() - start)
        return dataset

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, dataset: Dataset, shuffle: bool, sampler=None) -> DataLoader:
        rank, _ = self._rank_and_world()
        return DataLoader(
            dataset,
            batch_size=self.conf["batch_size"],
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            drop_last=shuffle or sampler is not None,
            num_workers=self.conf["num_workers"],
            worker_init_fn=functools.partial(_seed_worker, rank=rank),
            persistent_workers=self.conf["num_workers"] > 0,
        )

    def train_dataloader(self) -> DataLoader:
        if isinstance(self.train_set, DynamicMixingDataset):
            rank, world = self._rank_and_world()
            sampler = EpochKeySampler(self.train_set, num_replicas=world, rank=rank, shuffle=True,
                                      seed=self.seed, drop_last=True)
            return self._loader(self.train_set, shuffle=False, sampler=sampler)
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.valid_set, shuffle=False)
