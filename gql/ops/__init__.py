"""Operations entry points, apart from the request path: the `helpline` command, the token
tool and the schema export."""
