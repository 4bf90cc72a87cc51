"""The authorization matrix of API.md as a table: which key may do what, on which project."""

from __future__ import annotations

import pytest

from proxy.domain.access import (
    ADMIN,
    CREATE_PROJECTS,
    EVALUATE,
    MANAGE_KEYS,
    READ,
    WRITE,
    ApiKey,
    compile_keys,
    new_token,
    permits,
    token_sha256,
)

P, Q = "project-p", "project-q"
NEEDS = (READ, WRITE, EVALUATE, MANAGE_KEYS, CREATE_PROJECTS)

# scopes, restriction -> what it may do (R read, W write, E evaluate, K keys, C create projects)
MATRIX = [
    ((ADMIN,), None, "RWEKC"),
    ((ADMIN,), (P,), "RWE"),  # a restricted admin key can neither mint keys nor make projects
    ((READ,), None, "RE"),  # evaluate, track and OFREP are reads
    ((WRITE,), None, "WC"),
    ((READ, WRITE), None, "RWEC"),
    ((READ, WRITE), (P,), "RWE"),
    ((EVALUATE,), None, "E"),
    ((EVALUATE,), (P, Q), "E"),
]
LETTER = {READ: "R", WRITE: "W", EVALUATE: "E", MANAGE_KEYS: "K", CREATE_PROJECTS: "C"}


def key(scopes: tuple[str, ...], projects: tuple[str, ...] | None) -> ApiKey:
    return ApiKey(
        "id", "name", frozenset(scopes), None if projects is None else frozenset(projects)
    )


@pytest.mark.parametrize(("scopes", "projects", "allowed"), MATRIX)
def test_each_key_may_do_exactly_what_the_matrix_says(
    scopes: tuple[str, ...], projects: tuple[str, ...] | None, allowed: str
) -> None:
    k = key(scopes, projects)
    assert "".join(LETTER[n] for n in NEEDS if permits(k, n)) == allowed
    assert k.can_evaluate == ("E" in allowed)


@pytest.mark.parametrize(("scopes", "projects", "allowed"), MATRIX)
def test_a_restricted_key_is_refused_on_other_projects(
    scopes: tuple[str, ...], projects: tuple[str, ...] | None, allowed: str
) -> None:
    k = key(scopes, projects)
    for need in NEEDS:
        on_p = permits(k, need, P)
        on_other = permits(k, need, "project-z")
        assert on_p == permits(k, need)  # P is always in the restriction when there is one
        assert on_other == (permits(k, need) and projects is None)


def test_tokens_have_the_documented_form_and_are_known_by_their_hash() -> None:
    token = new_token()
    assert token.startswith("kr_live_") and len(token) == len("kr_live_") + 43
    assert token_sha256(token) == token_sha256(token.encode())
    assert len(token_sha256(token)) == 64 and token_sha256(token) != token_sha256(new_token())


def test_revoked_keys_are_not_compiled() -> None:
    records = [
        {"id": "a", "name": "a", "scopes": ["*"], "project_ids": None, "token_sha256": "ha"},
        {"id": "b", "name": "b", "scopes": ["*"], "token_sha256": "hb", "revoked_at": "now"},
        {"id": "c", "name": "c", "scopes": ["*"], "token_sha256": "hc", "revoked_at": None},
    ]
    assert set(compile_keys(records)) == {"ha", "hc"}
