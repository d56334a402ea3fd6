"""What operators do: manual actions and event submission (actions.py), the /ops API (api.py), the console
pages (pages.py) and bulk import (event_import.py)."""
