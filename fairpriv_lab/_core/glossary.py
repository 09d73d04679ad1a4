"""The words every face of the package uses (demo, terminal tables, HTML report, notebooks).

Each term is defined here once (docs/design.md section 4) and quoted wherever it is shown, so
the terminal, the HTML report and the notebooks say the same thing in the same words.
"""

from __future__ import annotations

import math

__all__ = ["TERMS", "glossary", "empirical_epsilon_line", "EMPIRICAL_CAP", "EMPIRICAL_BOUND"]

# term -> one plain-language definition (percentage points = pp)
TERMS: dict[str, str] = {
    "IPR": "individual privacy risk of one record = 2 x accuracy - 1 of the best membership "
           "attack on it (0 = the attacker only guesses, 100 pp = always right)",
    "GPR": "group privacy risk = the mean IPR over a group's audited records, in pp",
    "GPRP": "group privacy risk parity = largest GPR - smallest GPR, the gap between the most "
            "and the least exposed group; it is >= 0 by construction, so its own interval never "
            "contains 0 and proves nothing alone: read it against its floor",
    "PA-ALOOA": "the worst-case audit: for each record, one loss threshold over model pairs "
                "trained with and without it (approximate leave-one-out)",
    "PA-GA": "the average-case global attack: one loss threshold per model for all records",
    "PA-GBA": "the average-case group-based attack: one loss threshold per model and group",
    "floor": "what the same estimator reads with zero leakage (membership labels shuffled "
             "within each record); 'GPRP floor' is the GPRP of those shuffled readings, the gap "
             "that noise alone produces",
    "negative GPR": "the cross-fitted estimator scores an attack on models it was not fitted "
                    "on, so with no leakage it reads 0 on average and below 0 about half the "
                    "time; a negative GPR means no measurable leakage",
    "signed difference": "GPR(minority) - GPR(majority) with its bootstrap CI: when the CI "
                         "contains 0, this audit cannot say which group is more exposed",
    "empirical eps": "a lower bound ε̂ on the privacy loss read from the attacks (Clopper-Pearson "
                     "+ mu-GDP, a heuristic; beside it the rigorous (eps, delta) bound); it must "
                     "never exceed the accounted eps of a DP run; the most it can show is the "
                     "largest ε̂ these many models could certify",
}

#: The observed empirical ε and the most a given number of models could show: one wording.
EMPIRICAL_BOUND = "empirical ε̂ (lower bound read from the attacks)"
EMPIRICAL_CAP = "largest ε̂ these {n_models} models could certify"


def glossary(terms: tuple[str, ...] | None = None, *, width: int = 96, indent: str = "  ") -> str:
    """Return the definitions of ``terms`` (all by default) as wrapped plain text."""
    import textwrap

    keys = tuple(TERMS) if terms is None else terms
    head = max(len(k) for k in keys)
    lines = []
    for k in keys:
        lines += textwrap.wrap(TERMS[k], width=width, initial_indent=f"{indent}{k:<{head}}  ",
                               subsequent_indent=indent + " " * (head + 2))
    return "\n".join(lines)


def empirical_epsilon_line(group: str, bound: float, cap: float, n_models: int, *, width: int = 8,
                           rigorous: float = math.nan) -> str:
    """One group's empirical ε in the one wording: the observed bound ε̂, then the cap."""
    cap_text = EMPIRICAL_CAP.format(n_models=n_models)
    strict = f" (rigorous {rigorous:.2f})" if math.isfinite(rigorous) else ""
    return f"{group:<{width}} ε̂ = {bound:5.2f}{strict}   ({cap_text}: {cap:.2f})"
