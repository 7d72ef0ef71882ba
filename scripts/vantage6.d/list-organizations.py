"""Lists vantage6 organisations with the official client: a smoke test of DIR/env.

    . DIR/env && $V6_PYTHON scripts/vantage6.d/list-organizations.py

Logs in with the password grant (v6login.py) and prints one line per
organisation: its id and name, and whether it is in V6_COLLABORATION.
"""

import os

from v6login import login

client = login()
collaboration = os.environ.get("V6_COLLABORATION")
members = set()
if collaboration:
    members = {org["id"] for org in client.organization.list(collaboration=int(collaboration))["data"]}
print(f"logged in as {client.whoami.name} (organisation {client.whoami.organization_name})")
for org in client.organization.list()["data"]:
    mark = f" (in collaboration {collaboration})" if org["id"] in members else ""
    print(f"organisation {org['id']}: {org['name']}{mark}")
