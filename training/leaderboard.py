"""A leaderboard of policy versions from human labels: Bradley-Terry ratings with bootstrap
95% confidence intervals.

Every label on a comparison whose two answers come from different versions (the comparisons
made after each promotion, and arena votes) is one game: a win, or a tie counted as half a
win each. "Both bad" says nothing about which is better and is left out, as are labels a
reviewer rejected and labels their annotator withdrew. Of one annotator's arena votes on the
same two versions only the first is a game: a battle is theirs to start as often as they like
(and the vote shows which version was which), so more of them would let one person outweigh
everybody else. The human promotion gate (training/gates.py) reads the same games, so the gate
and this board never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import F

from feedback.models import Comparison, PreferenceLabel, Project
from training.models import PolicyVersion

ELO_SCALE = 400 / np.log(10)  # ratings read like Elo: +400 means 10:1 odds
PRIOR = 0.1  # weak L2 pull towards 0 keeps a version that won every game finite


@dataclass(frozen=True)
class Game:
    first: int  # policy version numbers
    second: int
    score: float  # 1: first won, 0: second won, 0.5: tie


@dataclass(frozen=True)
class Rating:
    version: int
    status: str
    rating: float | None
    low: float | None
    high: float | None
    games: int


def version_games(*, project: Project) -> list[Game]:
    labels = (
        # A consistency repeat is the same annotator's second look: one game per label.
        # A withdrawn label was undone by its annotator: no game.
        PreferenceLabel.objects.filter(
            comparison__project=project, is_repeat=False, withdrawn_at__isnull=True
        )
        .exclude(review_status=PreferenceLabel.ReviewStatus.REJECTED)
        .exclude(choice=PreferenceLabel.Choice.BOTH_BAD)
        # A person's edit against the answer they edited: one side is no version's answer.
        .exclude(comparison__kind=Comparison.Kind.EDIT)
        .exclude(
            comparison__completion_a__policy_version=F("comparison__completion_b__policy_version")
        )
        .values_list(
            "choice",
            "comparison__completion_a__policy_version__number",
            "comparison__completion_b__policy_version__number",
            "comparison__kind",
            "annotator_id",
        )
        .order_by("id")
    )
    score = {"a": 1.0, "b": 0.0, "tie": 0.5}
    games = []
    voted: set[tuple[int, frozenset[int]]] = set()  # (annotator, pair) with an arena game
    for choice, a, b, kind, annotator_id in labels:
        if kind == Comparison.Kind.ARENA:
            if (annotator_id, frozenset((a, b))) in voted:
                continue
            voted.add((annotator_id, frozenset((a, b))))
        games.append(Game(a, b, score[choice]))
    return games


def fit(games: list[Game], versions: list[int]) -> np.ndarray:
    """Maximum a posteriori Bradley-Terry strengths (natural log scale), by Newton's method."""
    index = {v: i for i, v in enumerate(versions)}
    n = len(versions)
    first = np.array([index[g.first] for g in games], dtype=int)
    second = np.array([index[g.second] for g in games], dtype=int)
    y = np.array([g.score for g in games])
    theta = np.zeros(n)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(theta[first] - theta[second])))
        grad = -PRIOR * theta
        np.add.at(grad, first, y - p)
        np.add.at(grad, second, p - y)
        w = p * (1 - p)
        hess = -PRIOR * np.eye(n)
        np.add.at(hess, (first, first), -w)
        np.add.at(hess, (second, second), -w)
        np.add.at(hess, (first, second), w)
        np.add.at(hess, (second, first), w)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return theta - theta.mean()


def fit_with_bootstrap(
    games: list[Game], versions: list[int], *, bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The fit on all games, and one fit per bootstrap resample of the games: shapes (V,)
    and (bootstrap, V). Percentiles of the samples give the intervals."""
    point = fit(games, versions)
    rng = np.random.default_rng(seed)
    samples = np.array(
        [
            fit([games[i] for i in rng.integers(0, len(games), len(games))], versions)
            for _ in range(bootstrap)
        ]
    )
    return point, samples


def win_probability(
    games: list[Game], *, version: int, against: int, bootstrap: int = 200, seed: int = 0
) -> tuple[float, float, float, int]:
    """The chance that `version` beats `against` under the Bradley-Terry fit of their games
    with each other (either side), with its bootstrap 95% interval, and the games counted:
    (p, low, high, games). Other versions' games are left out. Needs at least one game."""
    pair = [g for g in games if {g.first, g.second} == {version, against}]
    if not pair:
        raise ValueError(f"v{version} and v{against} have no game with each other.")
    versions = [version, against]
    point, samples = fit_with_bootstrap(pair, versions, bootstrap=bootstrap, seed=seed)

    def p(theta: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(theta[..., 0] - theta[..., 1])))

    low, high = np.percentile(p(samples), [2.5, 97.5])
    return float(p(point)), float(low), float(high), len(pair)


def leaderboard(*, project: Project, bootstrap: int = 200, seed: int = 0) -> list[Rating]:
    """Every version of the project, best rated first; versions without games have no rating."""
    policies = list(PolicyVersion.objects.filter(project=project).order_by("number"))
    games = version_games(project=project)
    played = sorted({g.first for g in games} | {g.second for g in games})
    counts = {v: sum(v in (g.first, g.second) for g in games) for v in played}
    ratings: dict[int, tuple[float, float, float]] = {}
    if len(played) >= 2:
        point, samples = fit_with_bootstrap(games, played, bootstrap=bootstrap, seed=seed)
        low, high = np.percentile(samples, [2.5, 97.5], axis=0)
        for i, version in enumerate(played):
            ratings[version] = (
                1000 + ELO_SCALE * point[i],
                1000 + ELO_SCALE * low[i],
                1000 + ELO_SCALE * high[i],
            )
    rows = [
        Rating(
            version=p.number,
            status=p.status,
            rating=ratings.get(p.number, (None,))[0],
            low=ratings[p.number][1] if p.number in ratings else None,
            high=ratings[p.number][2] if p.number in ratings else None,
            games=counts.get(p.number, 0),
        )
        for p in policies
    ]
    return sorted(rows, key=lambda r: (r.rating is None, -(r.rating or 0), r.version))
