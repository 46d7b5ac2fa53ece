"""Profile ingestion: which operators take the GPU time in *your* traces, and their hot shapes.

``solbench profile import FILES... --out weights.json`` reads nsys summaries/traces/SQLite exports
and torch profiler tables/Chrome traces, classifies every kernel with an ordered rule table
(``rules.yaml``; extend it with ``--rules``), and writes operator weights for ``solbench run
--weights``. ``solbench profile shapes`` turns recorded input shapes into a suite file for
``solbench run --suite``. See docs/PROFILES.md.
"""
from solbench.profiles.classifier import CLASSES, Classifier, RulesError, load_rules
from solbench.profiles.importance import Importance, combine, importance, summarize
from solbench.profiles.model import Kernel, Profile, ProfileError
from solbench.profiles.readers import read_profile

__all__ = ["CLASSES", "Classifier", "Importance", "Kernel", "Profile", "ProfileError", "RulesError", "combine",
           "importance", "load_rules", "read_profile", "summarize"]
