"""Map kernels to catalog operators or generic classes with an ordered rule table (``rules.yaml``).

The table is data: users extend it with ``--rules extra.yaml`` (same schema; their rules are tried
first). Each kernel is matched by name and, where the trace recorded it, by the CPU operator that
launched it. Helper kernels (``attach``) are grouped with the operator launched alongside them, so a
cuBLAS split-K reduction counts with its GEMM and FA3's scheduler and combine kernels with the
attention launch.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import yaml

from solbench.profiles.model import Kernel

CLASSES = ("gemm", "attention", "communication", "memcpy/memset", "elementwise", "reduction", "sampling",
           "quantization", "other")
UNCLASSIFIED = "unclassified"
# Softmax-attention operators of the catalog: with the class "attention", where every attention kernel
# must land (the acceptance test checks that no attention kernel is filed anywhere else).
ATTENTION_FAMILY = frozenset({"attention", "attention_forward", "unified_attention", "paged_attention_decode",
                              "mla_decode_attention"})
# The families the acceptance tests hold the table to: a GEMM or MoE kernel must land in its family.
GEMM_FAMILY = frozenset({"gemm", "block_scaled_mm", "fused_moe", "fp8_blockscale_fused_moe", "linear_sigmoid_mul"})
MOE_FAMILY = frozenset({"fused_moe", "fp8_blockscale_fused_moe", "moe_topk_gating_softmax", "moe_align_block_size",
                        "moe_count_and_sort", "moe_sum_reduce"})
ATTACH = ("previous", "next", "either")
# Profilers mark a cut name with "..." (torch tables) or "…" (U+2026, nsys tables).
CUT_MARKS = ("...", "\u2026")


def visible_part(name: str) -> tuple[str, bool]:
    """The text a profiler left of a name it cut short, and whether it was cut."""
    for mark in CUT_MARKS:
        if name.endswith(mark):
            return name[: -len(mark)], True
    return name, False


class RulesError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    name: str
    target: str
    kernel: re.Pattern | None
    cpu_op: re.Pattern | None
    attach: str | None
    with_: frozenset | None
    source: str
    line: int
    literals: tuple = ()

    def matches(self, name: str, cpu_op: str | None, truncated: bool = False) -> bool:
        if self.kernel is not None and not self.kernel.search(name):
            if not (truncated and self._cut_literal(name)):
                return False
        if self.cpu_op is not None and (cpu_op is None or not self.cpu_op.search(cpu_op)):
            return False
        return True

    def _cut_literal(self, name: str) -> bool:
        return self.cut_literal(name) is not None

    def cut_literal(self, name: str) -> str | None:
        """A name cut short by the profiler ("...RMSNormKern...") matches a rule whose pattern has a
        literal alternative that the visible text ends in the middle of (at least 6 characters).
        Returns that literal."""
        visible = visible_part(name)[0]
        low = visible.lower()
        for lit, icase in self.literals:
            v = low if icase else visible
            for j in range(len(lit) - 1, 5, -1):
                if v.endswith(lit[:j]):
                    return lit
        return None


def _literal_alternatives(pattern: str) -> tuple:
    icase = pattern.startswith("(?i)")
    body = pattern[4:] if icase else pattern
    alts, depth, cur = [], 0, ""
    for ch in body:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            alts.append(cur)
            cur = ""
        else:
            cur += ch
    alts.append(cur)
    out = []
    for a in alts:
        a = a.replace("\\b", "").lstrip("^")
        if re.fullmatch(r"[A-Za-z0-9_:]{6,}", a):
            out.append((a.lower() if icase else a, icase))
    return tuple(out)


@dataclass(frozen=True)
class Match:
    target: str
    rule: Rule | None

    @property
    def helper(self) -> bool:
        return self.rule is not None and self.rule.attach is not None


@functools.lru_cache(maxsize=None)
def catalog_operators() -> frozenset:
    from solbench.catalog import operator_entries
    return frozenset(operator_entries())


def valid_targets() -> frozenset:
    return catalog_operators() | frozenset(CLASSES)


def load_rules(path: str | Path | None = None) -> list[Rule]:
    """Parse a rules file (the packaged one when ``path`` is None). Errors name the file and line."""
    if path is None:
        source = "solbench/profiles/rules.yaml"
        text = resources.files(__package__).joinpath("rules.yaml").read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise RulesError(f"{path}: cannot read rules file: {e}") from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise RulesError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RulesError(f"{source}:1: a rules file is a mapping with a 'rules' list")
    rules_node = next(v for k, v in root.value if k.value == "rules")
    targets = valid_targets()
    rules = []
    for item, node in zip(data["rules"], rules_node.value):
        line = node.start_mark.line + 1
        where = f"{source}:{line}"
        if not isinstance(item, dict):
            raise RulesError(f"{where}: each rule is a mapping (kernel/cpu_op/target/...)")
        unknown = set(item) - {"name", "kernel", "cpu_op", "target", "attach", "with"}
        if unknown:
            raise RulesError(f"{where}: unknown rule key(s) {sorted(unknown)}")
        if "kernel" not in item and "cpu_op" not in item:
            raise RulesError(f"{where}: a rule needs 'kernel' or 'cpu_op' (a regex)")
        target = item.get("target")
        if target not in targets:
            raise RulesError(f"{where}: target {target!r} is neither a catalog operator nor a class "
                             f"({', '.join(CLASSES)})")
        attach = item.get("attach")
        if attach is not None and attach not in ATTACH:
            raise RulesError(f"{where}: attach must be one of {', '.join(ATTACH)}, got {attach!r}")
        with_ = item.get("with")
        if with_ is not None:
            with_ = [with_] if isinstance(with_, str) else with_
            bad = [w for w in with_ if w not in targets]
            if bad:
                raise RulesError(f"{where}: 'with' names unknown target(s) {bad}")
            with_ = frozenset(with_)
        pats = {}
        for key in ("kernel", "cpu_op"):
            if key in item:
                try:
                    pats[key] = re.compile(str(item[key]))
                except re.error as e:
                    raise RulesError(f"{where}: bad {key} regex {item[key]!r}: {e}") from None
        rules.append(Rule(name=str(item.get("name", f"rule@{line}")), target=target, kernel=pats.get("kernel"),
                          cpu_op=pats.get("cpu_op"), attach=attach, with_=with_, source=source, line=line,
                          literals=_literal_alternatives(str(item["kernel"])) if "kernel" in item else ()))
    return rules


class Classifier:
    def __init__(self, extra_rules: Sequence[str | Path] = ()):
        rules: list[Rule] = []
        for p in extra_rules:
            rules.extend(load_rules(p))
        rules.extend(load_rules())
        self.rules = rules
        self._cache: dict[tuple, Match] = {}

    def match(self, name: str, cpu_op: str | None = None) -> Match:
        key = (name, cpu_op)
        m = self._cache.get(key)
        if m is None:
            m = Match(UNCLASSIFIED, None)
            truncated = visible_part(name)[1]
            if truncated:
                # Use the cut text only when it points at one target: "...rms_norm_" could be
                # rms_norm_kernel or rms_norm_dynamic_per_token_quant, and then stays unresolved.
                partial = {r.target for r in self.rules
                           if r.kernel is not None and r.literals and r._cut_literal(name)
                           and not r.kernel.search(name)}
                truncated = len(partial) == 1
            for r in self.rules:
                if r.matches(name, cpu_op, truncated):
                    m = Match(r.target, r)
                    break
            self._cache[key] = m
        return m

    def explain(self, name: str, cpu_op: str | None = None) -> str:
        """Which rule files ``name`` where, and why: the rule, where it is defined, and the text of the
        name that its pattern matched (or, for a cut name, the literal the visible text ends inside)."""
        m = self.match(name, cpu_op)
        lines = [name]
        if m.rule is None:
            visible, cut = visible_part(name)
            lines.append(f"  -> {UNCLASSIFIED}: no rule matches"
                         + (" (the name is cut short; the visible text points at no single target)" if cut else ""))
            return "\n".join(lines)
        r = m.rule
        kind = "class" if r.target in CLASSES else "catalog operator"
        lines.append(f"  -> {r.target} ({kind}), rule '{r.name}' at {r.source}:{r.line}")
        if r.kernel is not None:
            hit = r.kernel.search(name)
            if hit is not None:
                lines.append(f"     its kernel pattern {_short_pattern(r.kernel.pattern)} matched {hit.group(0)!r} at "
                             f"column {hit.start()}")
                # Lookaheads (Inductor rules) test for ops anywhere in the rest of the name.
                if "(?=" in r.kernel.pattern:
                    lines.append(f"     and its lookaheads found the ops they require in {name[hit.end():]!r}")
            else:
                lit = r.cut_literal(name)
                lines.append(f"     the name is cut short and its visible text ends inside {lit!r}, a literal of "
                             f"its kernel pattern {_short_pattern(r.kernel.pattern)}")
        if r.cpu_op is not None:
            lines.append(f"     launching CPU operator {cpu_op!r} matched {r.cpu_op.pattern!r}")
        if r.attach is not None:
            lines.append(f"     a helper kernel: in traces it joins the {r.attach} launch"
                         + (f" if that is one of {sorted(r.with_)}" if r.with_ else ""))
        return "\n".join(lines)

    def classify(self, kernels: Iterable[Kernel], ordered: bool) -> Iterator[tuple[Kernel, str, bool]]:
        """Yield (kernel, target, is_primary). A helper that joined a neighbour takes its target and
        is not a launch of its own; summary formats (not ordered) have no neighbours."""
        if not ordered:
            for k in kernels:
                m = self.match(k.name, k.cpu_op)
                yield k, m.target, True
            return
        prev: list | None = None  # previous group: [(kernel, match, resolved target)]
        cur: list | None = None
        for group in _groups(kernels):
            entries = [[k, self.match(k.name, None if k.graph else k.cpu_op), None] for k in group]
            if cur is not None:
                yield from self._resolve(prev, cur, entries)
                prev = cur
            cur = entries
        if cur is not None:
            yield from self._resolve(prev, cur, None)

    def _resolve(self, prev, cur, nxt):
        # Within one known launch, the first kernel of each target is that target's launch.
        launched: set[str] = set()
        for e in cur:
            if not e[1].helper:
                e[2] = e[1].target
        for j, e in enumerate(cur):
            k, m = e[0], e[1]
            if not m.helper:
                first = k.launch is None or e[2] not in launched
                launched.add(e[2])
                yield k, e[2], first
                continue
            joined = None
            if k.launch is not None and len(cur) > 1:
                before = [x for x in reversed(cur[:j]) if not x[1].helper]
                after = [x for x in cur[j + 1:] if not x[1].helper]
                order = {"previous": before + after, "next": after + before}.get(m.rule.attach, before + after)
                joined = next((x[1].target for x in order if _allowed(m, x[1].target)), None)
            else:
                cands = []
                if m.rule.attach in ("previous", "either"):
                    p = cur[j - 1] if j > 0 else (prev[-1] if prev else None)
                    if p is not None and p[0].stream == k.stream:
                        cands.append(p[2])
                if m.rule.attach in ("next", "either"):
                    n = cur[j + 1] if j + 1 < len(cur) else (nxt[0] if nxt else None)
                    if n is not None and n[0].stream == k.stream and not n[1].helper:
                        cands.append(n[1].target)
                joined = next((t for t in cands if t is not None and t != UNCLASSIFIED and _allowed(m, t)), None)
            e[2] = joined if joined is not None else m.target
            first = joined is None and (k.launch is None or e[2] not in launched)
            if joined is None:
                launched.add(e[2])
            yield k, e[2], first


def _short_pattern(pattern: str, width: int = 90) -> str:
    return "/" + (pattern if len(pattern) <= width else pattern[:width - 3] + "...") + "/"


def _allowed(m: Match, target: str) -> bool:
    if target == UNCLASSIFIED:
        return False
    return m.rule.with_ is None or target in m.rule.with_


def _groups(kernels: Iterable[Kernel]) -> Iterator[list[Kernel]]:
    """Consecutive kernels of one launch (same stream and launching CPU operator). Kernels with no
    known launch are groups of one; their helpers look at the adjacent kernel on the stream."""
    group: list[Kernel] = []
    for k in kernels:
        if group and (k.launch is None or k.launch != group[0].launch or k.stream != group[0].stream
                      or k.graph or group[0].graph):
            yield group
            group = []
        group.append(k)
    if group:
        yield group
