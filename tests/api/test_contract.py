"""The served schema keeps every name and meaning of the public contract.

`careforall/api/contract.graphql` is the contract clients build on. The schema
may add types, fields, enum values and optional arguments; it may not drop or
retype anything the contract names, nor add a required argument or input field.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    build_schema,
    print_ast,
)

from careforall.api.schema import schema as served_schema

CONTRACT = (
    Path(__file__).resolve().parents[2] / "careforall" / "api" / "contract.graphql"
)


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
