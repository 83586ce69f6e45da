"""largest_clique (regroup pruning) and Proposal bookkeeping."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from nodeagent.core.regroup import Proposal, largest_clique


def full(nodes: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    return {n: nodes for n in nodes}


def test_everyone_hears_everyone() -> None:
    votes = full((1, 2, 3))
    assert largest_clique(1, votes) == (1, 2, 3)
    assert largest_clique(3, votes) == (1, 2, 3)


def test_votes_need_not_include_the_voter_itself() -> None:
    votes = {1: (2, 3), 2: (1, 3), 3: (1, 2)}
    assert largest_clique(2, votes) == (1, 2, 3)


def test_singleton_when_nobody_is_heard_back() -> None:
    assert largest_clique(3, {3: (3,)}) == (3,)
    assert largest_clique(3, {}) == (3,)
    assert largest_clique(3, {1: (1, 2, 3), 2: (1, 2, 3)}) == (3,)  # 3 cast no vote: hears nobody
    assert largest_clique(2, {1: (1,), 2: (1, 2), 3: (2, 3)}) == (2,)  # one-way hearing only


def test_asymmetric_hearing_is_not_enough() -> None:
    # 3 hears 1 and 2, but neither hears 3 (3's sends are lost): 3 is pruned.
    votes = {1: (1, 2), 2: (1, 2), 3: (1, 2, 3)}
    assert largest_clique(1, votes) == (1, 2)
    assert largest_clique(3, votes) == (3,)
    # 1 hears 3 but 3 does not hear 1: the pair is not mutual.
    votes = {1: (1, 2, 3), 2: (1, 2, 3), 3: (2, 3)}
    assert largest_clique(1, votes) == (1, 2)
    assert largest_clique(2, votes) in ((1, 2), (2, 3))
    assert largest_clique(2, votes) == (1, 2)  # the tie goes to the lowest ids


def test_ties_go_to_the_lowest_ids() -> None:
    # 2 and 3 cannot hear each other; 1 hears both: {1,2} and {1,3} tie.
    votes = {1: (1, 2, 3), 2: (1, 2), 3: (1, 3)}
    assert largest_clique(1, votes) == (1, 2)
    # Two disjoint 2-cliques containing 4: {4,5} and {4,6}; 5 < 6.
    votes = {4: (4, 5, 6), 5: (4, 5), 6: (4, 6)}
    assert largest_clique(4, votes) == (4, 5)


def test_larger_set_wins_over_lower_ids() -> None:
    # {1,2} is a clique, but {1,3,4} is larger.
    votes = {1: (1, 2, 3, 4), 2: (1, 2), 3: (1, 3, 4), 4: (1, 3, 4)}
    assert largest_clique(1, votes) == (1, 3, 4)


def test_a_bigger_clique_without_me_does_not_matter() -> None:
    votes = {1: (1, 2), 2: (1, 2, 3, 4), 3: (2, 3, 4), 4: (2, 3, 4)}
    assert largest_clique(1, votes) == (1, 2)
    assert largest_clique(3, votes) == (2, 3, 4)


def test_eight_nodes_partitioned_in_halves() -> None:
    left, right = (1, 2, 3, 4), (5, 6, 7, 8)
    votes = {**full(left), **full(right)}
    assert largest_clique(1, votes) == left
    assert largest_clique(8, votes) == right


def mutual(votes: dict[int, tuple[int, ...]], a: int, b: int) -> bool:
    return b in votes.get(a, ()) and a in votes.get(b, ())


@settings(max_examples=150, deadline=None)
@given(
    hears=st.dictionaries(
        st.integers(1, 7),
        st.lists(st.integers(1, 7), max_size=7).map(lambda x: tuple(sorted(set(x)))),
        max_size=7,
    ),
    me=st.integers(1, 7),
)
def test_result_is_the_lexicographically_first_maximum_clique(
    hears: dict[int, tuple[int, ...]], me: int
) -> None:
    got = largest_clique(me, hears)
    assert me in got
    assert list(got) == sorted(set(got))
    assert all(mutual(hears, a, b) for a, b in combinations(got, 2))
    # Brute force over every set containing me: none larger; none as large with lower ids.
    others = sorted(n for n in range(1, 8) if n != me)
    best: tuple[int, ...] = (me,)
    for size in range(1, len(others) + 1):
        for combo in combinations(others, size):
            cand = tuple(sorted((me, *combo)))
            if not all(mutual(hears, a, b) for a, b in combinations(cand, 2)):
                continue
            if len(cand) > len(best) or (len(cand) == len(best) and cand < best):
                best = cand
    assert got == best


def test_proposal_missing_keeps_member_order() -> None:
    prop = Proposal(epoch=3, members=(1, 2, 3), incarnations=(1, 1, 1), owner=1, deadline_s=9.0)
    assert prop.missing == (1, 2, 3)
    prop.acks.update({1, 3})
    assert prop.missing == (2,)
    prop.acks.add(2)
    assert prop.missing == ()
    assert prop.record_op is None
