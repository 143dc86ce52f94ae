"""The fast executor: compiled plans for the hot documents (plans.py), answering as
Strawberry's executor does (gql/graphql)."""
