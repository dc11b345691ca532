"""The served schema keeps every name and meaning of the public contract.

`careforall/api/contract.graphql` is the contract clients build on. The schema
may add types, fields, enum values and optional arguments; it may not drop or
retype anything the contract names, nor add a required argument or input field.

`careforall/api/contract-0.3.graphql` adds to it. What of 0.3 is built must
match it exactly; what is not built yet is listed in NOT_YET_BUILT, so a 0.3
field that is missing or drifts from its definition fails.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from graphql import (
    DocumentNode,
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    build_ast_schema,
    build_schema,
    concat_ast,
    parse,
    print_ast,
)

from careforall.api.schema import schema as served_schema

API = Path(__file__).resolve().parents[2] / "careforall" / "api"
CONTRACT = API / "contract.graphql"
CONTRACT_03 = API / "contract-0.3.graphql"

# What contract 0.3 names that is not built yet: a type, "Type.field" or
# "Enum.VALUE". Everything else of 0.3 must be served as written. (The three
# optional arguments 0.3 gives Query.campaigns are in a comment there.)
NOT_YET_BUILT = frozenset({})


def _default(arg: GraphQLArgument | GraphQLInputField) -> str | None:
    """An argument's default as written in SDL; `String` and `String = null`
    mean the same to a client."""
    node = arg.ast_node
    if node is not None and node.default_value is not None:
        text = print_ast(node.default_value)
        return None if text == "null" else text
    if arg.default_value is not Undefined and arg.default_value is not None:
        return repr(arg.default_value)
    return None


def drift(contract: GraphQLSchema, served: GraphQLSchema) -> list[str]:
    problems: list[str] = []
    for name, wanted in contract.type_map.items():
        if name.startswith("__"):
            continue
        have: GraphQLNamedType | None = served.type_map.get(name)
        if have is None:
            problems.append(f"type {name} is missing")
            continue
        if type(have) is not type(wanted):
            problems.append(
                f"{name} is a {type(have).__name__}, not {type(wanted).__name__}"
            )
            continue
        if isinstance(wanted, GraphQLEnumType):
            assert isinstance(have, GraphQLEnumType)
            for value in set(wanted.values) - set(have.values):
                problems.append(f"enum {name} lost {value}")
        elif isinstance(wanted, GraphQLObjectType):
            assert isinstance(have, GraphQLObjectType)
            for fname, field in wanted.fields.items():
                got = have.fields.get(fname)
                if got is None:
                    problems.append(f"{name}.{fname} is missing")
                    continue
                if str(got.type) != str(field.type):
                    problems.append(f"{name}.{fname} is {got.type}, not {field.type}")
                for aname, arg in field.args.items():
                    got_arg = got.args.get(aname)
                    if got_arg is None:
                        problems.append(f"{name}.{fname}({aname}) is missing")
                        continue
                    if str(got_arg.type) != str(arg.type):
                        problems.append(
                            f"{name}.{fname}({aname}) is {got_arg.type}, not {arg.type}"
                        )
                    if _default(got_arg) != _default(arg):
                        problems.append(f"{name}.{fname}({aname}) default changed")
                for aname, arg in got.args.items():
                    if (
                        aname not in field.args
                        and isinstance(arg.type, GraphQLNonNull)
                        and _default(arg) is None
                    ):
                        problems.append(
                            f"{name}.{fname}({aname}) is a new required argument"
                        )
        elif isinstance(wanted, GraphQLInputObjectType):
            assert isinstance(have, GraphQLInputObjectType)
            for fname, field in wanted.fields.items():
                got_field = have.fields.get(fname)
                if got_field is None:
                    problems.append(f"input {name}.{fname} is missing")
                    continue
                if str(got_field.type) != str(field.type):
                    problems.append(
                        f"input {name}.{fname} is {got_field.type}, not {field.type}"
                    )
                if _default(got_field) != _default(field):
                    problems.append(f"input {name}.{fname} default changed")
            for fname, got_field in have.fields.items():
                if (
                    fname not in wanted.fields
                    and isinstance(got_field.type, GraphQLNonNull)
                    and _default(got_field) is None
                ):
                    problems.append(f"input {name}.{fname} is a new required field")
    for root in ("query_type", "mutation_type", "subscription_type"):
        wanted_root, have_root = getattr(contract, root), getattr(served, root)
        if wanted_root is not None and (
            have_root is None or have_root.name != wanted_root.name
        ):
            problems.append(f"{root} differs")
    return problems


def _names(document: DocumentNode) -> set[str]:
    """Every type, "Type.field" and "Enum.VALUE" a document defines."""
    names: set[str] = set()
    for node in document.definitions:
        name = node.name.value  # type: ignore[attr-defined]
        names.add(name)
        for member in (getattr(node, "fields", None) or ()) + (
            getattr(node, "values", None) or ()
        ):
            names.add(f"{name}.{member.name.value}")
    return names


def _has(served: GraphQLSchema, item: str) -> bool:
    type_name, _, member = item.partition(".")
    have = served.type_map.get(type_name)
    if have is None or not member:
        return have is not None
    if isinstance(have, GraphQLEnumType):
        return member in have.values
    return member in getattr(have, "fields", {})


def contract_03(served: GraphQLSchema) -> GraphQLSchema:
    """contract.graphql with 0.3's additions, less those not built yet that the
    served schema does not have (one it has is checked like any other)."""
    document = parse(CONTRACT_03.read_text())
    skip = {item for item in NOT_YET_BUILT if not _has(served, item)}
    kept = []
    for node in document.definitions:
        name = node.name.value  # type: ignore[attr-defined]
        if name in skip:
            continue
        for attribute in ("fields", "values"):
            items = getattr(node, attribute, None)
            if items:
                left = tuple(i for i in items if f"{name}.{i.name.value}" not in skip)
                node = dataclasses.replace(node, **{attribute: left})  # type: ignore[type-var]
                if not left:
                    break
        else:
            kept.append(node)
    additions = DocumentNode(definitions=tuple(kept))
    return build_ast_schema(concat_ast([parse(CONTRACT.read_text()), additions]))


def test_served_schema_keeps_the_contract() -> None:
    contract = build_schema(CONTRACT.read_text())
    served = build_schema(str(served_schema))
    assert drift(contract, served) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("pledgeCount: Int!", "pledgeCount: Int"),
            "CampaignTotals.pledgeCount is Int, not Int!",
        ),
        (
            ("  refundPayment(pledgeId: ID!): Pledge!", ""),
            "Mutation.refundPayment is missing",
        ),
        (
            ("first: Int = 20, after", "first: Int = 10, after"),
            "Query.campaigns(first) default changed",
        ),
        (("enum Role { DONOR ADMIN }", "enum Role { DONOR }"), "enum Role lost ADMIN"),
        (
            ("  message: String\n}", "  message: String\n  tip: Int!\n}"),
            "input PledgeInput.tip is a new required field",
        ),
    ],
)
def test_drift_is_detected(change: tuple[str, str], expected: str) -> None:
    """The check fails on each kind of break (simulated on the served side)."""
    text = CONTRACT.read_text()
    old, new = change
    assert old in text
    broken = build_schema(text.replace(old, new, 1))
    contract = build_schema(text)
    assert expected in drift(contract, broken)


def test_what_is_built_of_contract_03_matches_it() -> None:
    served = build_schema(str(served_schema))
    assert drift(contract_03(served), served) == []


def test_every_not_yet_built_name_is_in_contract_03() -> None:
    assert NOT_YET_BUILT - _names(parse(CONTRACT_03.read_text())) == set()


def test_contract_03_is_the_shared_one() -> None:
    """The copy in the package is the contract as agreed (where it is at hand)."""
    shared = Path(__file__).resolve().parents[3] / "shared" / "api"
    if not (shared / "contract-0.3.graphql").is_file():
        pytest.skip("no shared/ beside the checkout")
    assert CONTRACT_03.read_text() == (shared / "contract-0.3.graphql").read_text()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("logout: Boolean!", "logout: Boolean"), "Mutation.logout is Boolean"),
        (
            ("changePassword(currentPassword: String!, ", "changePassword("),
            "Mutation.changePassword(currentPassword) is missing",
        ),
        (("  changePassword(", "  changeMyPassword("), "changePassword is missing"),
    ],
)
def test_drift_of_a_built_03_field_is_detected(
    change: tuple[str, str], expected: str
) -> None:
    text = str(served_schema)
    old, new = change
    assert old in text
    broken = build_schema(text.replace(old, new, 1))
    problems = drift(contract_03(build_schema(text)), broken)
    assert any(expected in problem for problem in problems), problems
