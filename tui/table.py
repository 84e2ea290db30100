"""A row table keyed by what its rows show (an agent's name, a proposal's or a ticket's
id): :class:`KeyedTable` is filled with whole sets of rows, keeps the cursor on the same
row across refills and leaves itself alone when nothing changed, so a busy hub neither
flickers the table nor fires a new highlight."""

from __future__ import annotations

from textual.widgets import DataTable

Row = tuple[str, tuple[str, ...]]  # key, cells


class KeyedTable(DataTable[str]):
    """A zebra-striped row-cursor table with fixed ``columns``."""

    def __init__(self, *columns: str, id: str) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._columns = columns
        self._shown: list[Row] | None = None

    def on_mount(self) -> None:
        self.add_columns(*self._columns)

    @property
    def selected(self) -> str | None:
        """The key of the row under the cursor, if there is a row."""
        if self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return str(row_key.value)

    def fill(self, rows: list[Row]) -> None:
        """Show ``rows``, keeping the cursor on the same row (or where it was)."""
        if self._shown == rows:
            return
        self._shown = rows
        selected, cursor = self.selected, self.cursor_row
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        keys = [key for key, _ in rows]
        if keys:
            self.move_cursor(
                row=keys.index(selected) if selected in keys else min(cursor, len(keys) - 1)
            )
