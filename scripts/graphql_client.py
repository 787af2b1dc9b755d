"""An independent GraphQL client of gatosd's GraphQL face (issue #18, ADR 0044).

It uses no gatos code: graphql-core builds the schema from the SDL the daemon serves at
/api/v1/graphql/schema and validates every query against it before sending; requests
sends it. Used by tests/e2e/graphql.rs and demos/graphql.sh.

    from graphql_client import Client
    c = Client("http://127.0.0.1:6767", token)
    r = c.post("{ ledger { state { ref } } }")
"""

import json
import sys

import graphql
import requests


class Client:
    def __init__(self, base, token, validate=True):
        self.base = base.rstrip("/")
        self.url = self.base + "/api/v1/graphql"
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + token
        self.sdl = self.session.get(self.url + "/schema", timeout=60).text
        self.schema = graphql.build_schema(self.sdl)
        self.validate = validate

    def check(self, query):
        """Validates a query against the served SDL (a client-side error is raised)."""
        if not self.validate:
            return
        errors = graphql.validate(self.schema, graphql.parse(query))
        if errors:
            raise ValueError("query does not validate against the served SDL: %s" % errors)

    def post(self, query, variables=None, headers=None, check=True):
        """POSTs a query; returns the requests response (its .json() is the answer)."""
        if check:
            self.check(query)
        body = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return self.session.post(self.url, json=body, headers=headers or {}, timeout=120)

    def get(self, query, variables=None, headers=None, check=True):
        """GETs a query (the cacheable form)."""
        if check:
            self.check(query)
        params = {"query": query}
        if variables is not None:
            params["variables"] = json.dumps(variables)
        return self.session.get(self.url, params=params, headers=headers or {}, timeout=120)

    def data(self, query, variables=None):
        """POSTs a query that must succeed; returns (data, extensions)."""
        r = self.post(query, variables)
        if r.status_code != 200:
            raise RuntimeError("HTTP %d: %s" % (r.status_code, r.text))
        body = r.json()
        if body.get("errors"):
            raise RuntimeError("errors: %s" % body["errors"])
        return body["data"], body.get("extensions", {})

    # Durable snapshots (`git gatos snapshot`): the REST routes of snapshots.create, .list
    # and .delete; a snapshot is then a state to query by stateRef, or by
    # refPath "snapshots/<name>".
    def snapshot_create(self, name, token=None):
        return self.session.post(self.base + "/api/v1/snapshots", json={"name": name},
                                 headers=self._auth(token), timeout=120)

    def snapshots(self, token=None):
        return self.session.get(self.base + "/api/v1/snapshots", headers=self._auth(token),
                                timeout=60)

    def snapshot_delete(self, name, token=None):
        return self.session.delete(self.base + "/api/v1/snapshots/" + requests.utils.quote(name, safe=""),
                                   headers=self._auth(token), timeout=120)

    @staticmethod
    def _auth(token):
        return {"Authorization": "Bearer " + token} if token else {}


def code_of(response):
    """The taxonomy code of the first error of an answer."""
    body = response.json()
    errors = body.get("errors") or []
    if not errors:
        return None
    return errors[0].get("extensions", {}).get("code")


if __name__ == "__main__":
    # python3 scripts/graphql_client.py URL TOKEN QUERY [VARIABLES-JSON]
    c = Client(sys.argv[1], sys.argv[2])
    v = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
    r = c.post(sys.argv[3], v)
    print(json.dumps(r.json(), indent=2))
