"""Print the schema's SDL: `python -m gql.ops.export_schema > schema/schema.graphql`."""

from __future__ import annotations

import sys

from strawberry.printer import print_schema

from gql.graphql.schema import build_schema
from gql.graphql.settings import GraphQLSettings


def export() -> str:
    return print_schema(build_schema(GraphQLSettings())) + "\n"


if __name__ == "__main__":
    sys.stdout.write(export())
