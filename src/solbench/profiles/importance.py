"""Importance: each operator's and class's share of summed kernel time, per profile and over many.

Shares are of *summed* kernel time (kernels on concurrent streams both count), the quantity a
kernel speedup reduces. Over many profiles two weightings are reported: the mean of per-profile
shares (every profile counts the same; the default, like the catalog's own importance) and the
total-time-weighted share (long profiles count more).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from solbench.profiles.classifier import UNCLASSIFIED, Classifier
from solbench.profiles.model import Profile


@dataclass
class TargetStats:
    time_us: float = 0.0
    kernels: int = 0        # kernel instances
    launches: int = 0       # operator launches (helpers that joined a launch are not extra launches)
    names: Counter = field(default_factory=Counter)  # kernel name -> time

    def add(self, name: str, time_us: float, count: int, primary: bool) -> None:
        self.time_us += time_us
        self.kernels += count
        self.launches += count if primary else 0
        self.names[name] += time_us

    def merge(self, other: "TargetStats") -> None:
        self.time_us += other.time_us
        self.kernels += other.kernels
        self.launches += other.launches
        self.names.update(other.names)


@dataclass
class ProfileSummary:
    path: str
    format: str
    total_us: float
    targets: dict[str, TargetStats]
    graph_kernels: int = 0
    notes: list[str] = field(default_factory=list)

    def share(self, target: str) -> float:
        s = self.targets.get(target)
        return s.time_us / self.total_us if s and self.total_us > 0 else 0.0


def summarize(profile: Profile, classifier: Classifier) -> ProfileSummary:
    targets: dict[str, TargetStats] = {}
    total = 0.0
    graph = 0
    for k, target, primary in classifier.classify(profile.kernels, profile.ordered):
        targets.setdefault(target, TargetStats()).add(k.name, k.total_us, k.count, primary)
        total += k.total_us
        graph += k.count if k.graph else 0
    return ProfileSummary(path=profile.path, format=profile.format, total_us=total, targets=targets,
                          graph_kernels=graph, notes=list(profile.notes) + [f"warning: {w}" for w in profile.warnings])


@dataclass
class Importance:
    profiles: int
    total_us: float
    mean_shares: dict[str, float]           # includes UNCLASSIFIED
    weighted_shares: dict[str, float]
    stats: dict[str, TargetStats]           # summed over profiles

    def shares(self, weighting: str = "mean") -> dict[str, float]:
        return self.mean_shares if weighting == "mean" else self.weighted_shares

    def top_unclassified(self, n: int = 20) -> list[dict]:
        st = self.stats.get(UNCLASSIFIED)
        if not st or self.total_us <= 0:
            return []
        return [{"name": name, "time_us": round(t, 3), "share_of_all_time": t / self.total_us}
                for name, t in st.names.most_common(n)]

    def to_weights(self, weighting: str = "mean", top: int = 20) -> dict:
        sh = self.shares(weighting)
        other = self.weighted_shares if weighting == "mean" else self.mean_shares
        return {
            "shares": {k: v for k, v in sorted(sh.items(), key=lambda kv: -kv[1]) if k != UNCLASSIFIED},
            "unclassified": sh.get(UNCLASSIFIED, 0.0),
            "profiles": self.profiles,
            "top_unclassified": self.top_unclassified(top),
            "weighting": weighting,
            "shares_" + ("time_weighted" if weighting == "mean" else "mean"):
                {k: v for k, v in sorted(other.items(), key=lambda kv: -kv[1]) if k != UNCLASSIFIED},
            "total_kernel_time_us": round(self.total_us, 3),
        }


def combine(summaries: Sequence[ProfileSummary]) -> Importance:
    used = [s for s in summaries if s.total_us > 0]
    if not used:
        raise ValueError("no kernel time in any profile")
    total = sum(s.total_us for s in used)
    stats: dict[str, TargetStats] = {}
    mean: Counter = Counter()
    for s in used:
        for t, st in s.targets.items():
            stats.setdefault(t, TargetStats()).merge(st)
            mean[t] += st.time_us / s.total_us / len(used)
    weighted = {t: st.time_us / total for t, st in stats.items()}
    return Importance(profiles=len(used), total_us=total, mean_shares=dict(mean), weighted_shares=weighted,
                      stats=stats)


def importance(profiles: Iterable[Profile], classifier: Classifier) -> Importance:
    return combine([summarize(p, classifier) for p in profiles])
