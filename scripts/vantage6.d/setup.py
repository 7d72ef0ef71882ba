"""Creates the test federation in a fresh vantage6 HQ, through its REST API with
the official client (scripts/vantage6 up runs this).

    python setup.py DIR ORG_NAME...

Logged in as the root user (V6_* environment, see v6login.py) it creates one
organisation per ORG_NAME, one collaboration holding them and the root
organisation (HQ lets the root user create sessions only in collaborations
its own organisation is in), without encryption, a session in it with
collaboration scope, and one node per organisation, named ORG_NAME-node.
It writes, in DIR:

    federation.json       {"root_organization": ID, "collaboration": ID, "session": ID,
                           "organizations": [{"id": ID, "name": NAME,
                              "node": {"id": ID, "name": NAME, "api_key": KEY}}, ...]}
    federation.env        exports of V6_COLLABORATION, V6_SESSION and V6_ORGS
    nodes.tsv             organisation id, organisation name, node name; a line a node
    nodes/NODE/api-key    the node's API key (its Keycloak client's secret)
"""

import json
import os
import sys

from v6login import login


def created(kind: str, response: dict) -> dict:
    """RESPONSE, or an exit if HQ refused to create it."""
    if not isinstance(response, dict) or "id" not in response:
        sys.exit(f"setup.py: creating the {kind} failed: {response}")
    return response


def write_private(path: str, text: str) -> None:
    """Writes TEXT to PATH, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: setup.py DIR ORG_NAME...")
    out, names = sys.argv[1], sys.argv[2:]
    client = login()
    root = client.whoami.organization_id

    organizations = []
    for name in names:
        org = created(
            f"organisation {name}",
            client.organization.create(
                name=name,
                address1="-",
                address2="-",
                zipcode="-",
                country="-",
                domain=f"{name}.invalid",
            ),
        )
        organizations.append({"id": org["id"], "name": name})

    collaboration = created(
        "collaboration",
        client.collaboration.create(
            name="sandlet",
            organizations=[root] + [o["id"] for o in organizations],
            encrypted=False,
        ),
    )
    session = created(
        "session",
        client.session.create(
            scope="collaboration", name="sandlet", collaboration=collaboration["id"]
        ),
    )
    for org in organizations:
        node = created(
            f"node of {org['name']}",
            client.node.create(
                collaboration=collaboration["id"],
                organization=org["id"],
                name=f"{org['name']}-node",
            ),
        )
        if not node.get("api_key"):
            sys.exit(f"setup.py: HQ returned no API key for node {node['name']}")
        org["node"] = {"id": node["id"], "name": node["name"], "api_key": node["api_key"]}

    federation = {
        "root_organization": root,
        "collaboration": collaboration["id"],
        "session": session["id"],
        "organizations": organizations,
    }
    write_private(f"{out}/federation.json", json.dumps(federation, indent=2) + "\n")
    orgs = ",".join(str(o["id"]) for o in organizations)
    write_private(
        f"{out}/federation.env",
        f'export V6_COLLABORATION="{collaboration["id"]}"\n'
        f'export V6_SESSION="{session["id"]}"\n'
        f'export V6_ORGS="{orgs}"\n',
    )
    lines = []
    for org in organizations:
        node = org["node"]
        os.makedirs(f"{out}/nodes/{node['name']}", exist_ok=True)
        write_private(f"{out}/nodes/{node['name']}/api-key", node["api_key"] + "\n")
        lines.append(f"{org['id']}\t{org['name']}\t{node['name']}\n")
    with open(f"{out}/nodes.tsv", "w") as f:
        f.writelines(lines)
    for org in organizations:
        print(f"organisation {org['id']} {org['name']}: node {org['node']['name']}")
    print(f"collaboration {collaboration['id']}, session {session['id']}")


if __name__ == "__main__":
    main()
