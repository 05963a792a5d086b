"""The serviceaccount controller: a ``default`` ServiceAccount in every namespace, and a token
Secret for every ServiceAccount.

Watches Namespaces (each wakes its ``default`` account), ServiceAccounts and token Secrets.
Tokens are random (:func:`reconciler.api.generate_token`); the Secret holds the token for the
workload, and the API, when it stores the Secret, indexes only the token's hash for
``Api.authenticate_token``. The Secret is owned by its account, so the garbage collector
removes it with the account (and the token stops authenticating).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import ClassVar

from reconciler.api import (
    SERVICE_ACCOUNT_NAME_ANNOTATION,
    SERVICE_ACCOUNT_TOKEN_TYPE,
    SERVICE_ACCOUNT_UID_ANNOTATION,
    AlreadyExists,
    Forbidden,
    NotFound,
    generate_token,
    random_suffix,
)
from reconciler.controllers.runtime import Controller, ControllerContext, Result
from schemas import Namespace, ObjectKey, ObjectMeta, OwnerReference, Secret, ServiceAccount

__all__ = ["ServiceAccountController"]

_BY_ACCOUNT = "service-account-uid"


def _account_uid(secret: Secret) -> Iterable[str]:
    if secret.type == SERVICE_ACCOUNT_TOKEN_TYPE:
        uid = secret.metadata.annotations.get(SERVICE_ACCOUNT_UID_ANNOTATION)
        if uid:
            yield uid


def _account_of(secret: Secret) -> Iterable[ObjectKey]:
    name = secret.metadata.annotations.get(SERVICE_ACCOUNT_NAME_ANNOTATION)
    if secret.type == SERVICE_ACCOUNT_TOKEN_TYPE and name:
        yield ObjectKey("ServiceAccount", secret.namespace, name)


class ServiceAccountController(Controller):
    name: ClassVar[str] = "serviceaccount"
    workers: ClassVar[int] = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.namespaces = self.watch(
            Namespace, lambda ns: [ObjectKey("ServiceAccount", ns.name, "default")]
        )
        self.accounts = self.watch_own(ServiceAccount)
        self.secrets = self.watch(Secret, _account_of)
        self.secrets.add_index(_BY_ACCOUNT, _account_uid)

    def resync(self) -> None:
        super().resync()
        for ns in self.namespaces.list():
            self.queue.add(ObjectKey("ServiceAccount", ns.name, "default"))

    def reconcile(self, key: ObjectKey) -> Result | None:
        ns = self.namespaces.get(key.namespace)
        if ns is None or ns.metadata.deletion_timestamp is not None:
            return None
        self.await_own_writes(key)
        account = self.accounts.get(key.name, namespace=key.namespace)
        if account is None:
            if key.name != "default":
                return None
            account = self._create_default(key.namespace)
            if account is None:
                return None
        if self.secrets.by_index(_BY_ACCOUNT, account.metadata.uid or ""):
            return None
        token = generate_token()
        secret = Secret(
            metadata=ObjectMeta(
                name=f"{account.name}-token-{random_suffix()}",
                namespace=account.namespace,
                annotations={
                    SERVICE_ACCOUNT_NAME_ANNOTATION: account.name,
                    SERVICE_ACCOUNT_UID_ANNOTATION: account.metadata.uid or "",
                },
                owner_references=[
                    OwnerReference(
                        api_version="v1",
                        kind="ServiceAccount",
                        name=account.name,
                        uid=account.metadata.uid or "",
                    )
                ],
            ),
            type=SERVICE_ACCOUNT_TOKEN_TYPE,
            data={
                "token": base64.b64encode(token.encode()).decode(),
                "namespace": base64.b64encode(account.namespace.encode()).decode(),
            },
        )
        try:
            created = self.api.create(secret)
        except (Forbidden, NotFound):
            return None  # the namespace is going away
        self.note_write(key, self.secrets, int(created.metadata.resource_version or 0))
        return None

    def _create_default(self, namespace: str) -> ServiceAccount | None:
        try:
            created = self.api.create(
                ServiceAccount(metadata=ObjectMeta(name="default", namespace=namespace))
            )
        except AlreadyExists:
            return self.api.get(ServiceAccount, "default", namespace=namespace)
        except (Forbidden, NotFound):
            return None
        self.note_write(created.key, self.accounts, int(created.metadata.resource_version or 0))
        return created
