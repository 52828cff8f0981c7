"""Field guards: UNAUTHENTICATED without a valid token, FORBIDDEN without the admin role."""

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.permission import BasePermission

from gateway.auth import Principal


def require_principal(info: strawberry.Info) -> Principal:
    principal = info.context.principal
    if principal is None:
        reason = info.context.auth_error or "no bearer token was sent"
        raise GraphQLError(
            f"Authentication required: {reason}", extensions={"code": "UNAUTHENTICATED"}
        )
    return principal


def require_admin(info: strawberry.Info) -> Principal:
    principal = require_principal(info)
    if not principal.is_admin:
        raise GraphQLError(
            "This field needs the billing admin role", extensions={"code": "FORBIDDEN"}
        )
    return principal


class IsAuthenticated(BasePermission):
    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        require_principal(info)
        return True


class IsAdmin(BasePermission):
    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        require_admin(info)
        return True
