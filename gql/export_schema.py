"""Print the schema's SDL: `python -m gql.export_schema > schema/schema.graphql`."""

from __future__ import annotations

import sys

from strawberry.printer import print_schema

from gql.schema import schema


def export() -> str:
    return print_schema(schema) + "\n"


if __name__ == "__main__":
    sys.stdout.write(export())
