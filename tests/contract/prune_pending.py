"""Delete from pending.txt every element the served schema now has:
`python -m tests.contract.prune_pending` after implementing part of the contract."""

from schema.schema import schema_sdl
from tests.contract.test_contract import PENDING_PATH, schema_elements


def main() -> None:
    served = schema_elements(schema_sdl())
    lines = PENDING_PATH.read_text().splitlines()
    kept = [line for line in lines if line.startswith("#") or line.strip() not in served]
    PENDING_PATH.write_text("\n".join(kept) + "\n")
    print(f"removed {len(lines) - len(kept)} served elements from {PENDING_PATH.name}")


if __name__ == "__main__":
    main()
