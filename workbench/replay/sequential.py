"""The statistics of a replay's verdicts: the win rate with its interval, and the sequential test that lets a large
log stop early once the answer is clear.

Win rate: a win counts 1, a tie 1/2, a loss 0; its 95% interval is Wilson's score interval (statsmodels'
proportion_confint) on (wins + ties/2) of n verdicts.

Sequential test: a mixture sequential probability ratio test (Robbins' mSPRT) of H0: p = 1/2, where p is the
probability that the candidate wins a decisive (non-tie) verdict, the sign test's statistic. The alternative mixes p
over a uniform Beta(1, 1) prior, so after W wins and L losses the likelihood ratio is
B(W + 1, L + 1) / (1/2)^(W + L). It is a nonnegative martingale under H0, so by Ville's inequality stopping the
first time it reaches 1/alpha keeps the chance of a false decision at most alpha however often it is looked at
(always valid): wb looks after every batch of verdicts. At the stop, the decision is `candidate better` when W > L,
else `candidate worse`; a log that ends first is `undecided`.
"""

import math
from dataclasses import dataclass

from workbench.system.extras import require

ALPHA = 0.05
CONFIDENCE = 0.95
POINTS = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def win_rate(verdicts: list[str], confidence: float = CONFIDENCE) -> dict:
    """{"value", "ci_low", "ci_high", "n", "wins", "ties", "losses"} of verdicts ('win' | 'tie' | 'loss')."""
    wins, ties, losses = (sum(v == k for v in verdicts) for k in ("win", "tie", "loss"))
    n = wins + ties + losses
    if n == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0, "wins": 0, "ties": 0, "losses": 0}
    proportion = require("statsmodels.stats.proportion", "wb replay's win-rate interval", "judge")
    low, high = proportion.proportion_confint(wins + ties / 2, n, alpha=1 - confidence, method="wilson")
    return {"value": (wins + ties / 2) / n, "ci_low": float(low), "ci_high": float(high), "n": n, "wins": wins,
            "ties": ties, "losses": losses}


def log_likelihood_ratio(wins: int, losses: int) -> float:
    """log of the Beta(1, 1)-mixture likelihood ratio against p = 1/2 after `wins` and `losses` decisive verdicts."""
    special = require("scipy.special", "wb replay's sequential test", "judge")
    return float(special.betaln(wins + 1, losses + 1) + (wins + losses) * math.log(2))


@dataclass
class SequentialTest:
    """The mSPRT's state as verdicts arrive in batches."""

    alpha: float = ALPHA
    wins: int = 0
    losses: int = 0
    ties: int = 0
    looks: int = 0
    decision: str = "undecided"  # | "candidate better" | "candidate worse"

    @property
    def threshold(self) -> float:
        return math.log(1 / self.alpha)

    @property
    def decided(self) -> bool:
        return self.decision != "undecided"

    def update(self, verdicts: list[str]) -> bool:
        """Add a batch of verdicts; True once the test has decided (it never undecides)."""
        for v in verdicts:
            self.wins += v == "win"
            self.losses += v == "loss"
            self.ties += v == "tie"
        self.looks += 1
        if not self.decided and log_likelihood_ratio(self.wins, self.losses) >= self.threshold:
            self.decision = "candidate better" if self.wins > self.losses else "candidate worse"
        return self.decided

    def to_dict(self) -> dict:
        return {"test": "mSPRT (Beta(1,1) mixture) of P(candidate wins a decisive verdict) = 0.5",
                "alpha": self.alpha, "looks": self.looks, "wins": self.wins, "losses": self.losses,
                "ties": self.ties, "log_likelihood_ratio": round(log_likelihood_ratio(self.wins, self.losses), 4),
                "log_threshold": round(self.threshold, 4), "decision": self.decision}
