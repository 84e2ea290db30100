"""The console's dialogs: a small form (a reason, a mute, a ticket), a yes-or-no question
(an approval), the editor for edit-then-approve, and the help screen. Each is a modal
screen, centred in a framed box (:class:`Dialog` holds their CSS), that returns what was
entered, or None when dismissed with Escape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

Result = TypeVar("Result")


class Dialog(ModalScreen[Result]):
    """A modal screen showing one framed box (``.dialog``) in the middle."""

    DEFAULT_CSS = """
    Dialog {
        align: center middle;
        .dialog {
            width: 80%;
            height: auto;
            max-height: 90%;
            padding: 1 2;
            border: thick $primary;
            background: $surface;
        }
        .dialog.editor { height: 90%; }
        .multiline { height: 6; }
        #help-scroll { height: auto; max-height: 55vh; }
        .dialog-title { text-style: bold; margin-bottom: 1; }
        .hint { color: $text-muted; }
        .error { color: $error; }
        #editor { height: 1fr; }
    }
    """


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    value: str = ""
    required: bool = True
    secret: bool = False
    multiline: bool = False
    """Several lines (a text area: Enter breaks the line, Ctrl+S submits)."""


class FormScreen(Dialog[dict[str, str] | None]):
    """A titled form of fields; Enter on the last one-line field, Ctrl+S or OK submits."""

    BINDINGS: ClassVar = [
        Binding("escape", "dismiss_form", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, title: str, fields: list[Field]) -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            for f in self.fields:
                yield Label(f.label)
                if f.multiline:
                    yield TextArea(f.value, id=f"field-{f.name}", classes="multiline")
                else:
                    yield Input(value=f.value, id=f"field-{f.name}", password=f.secret)
            yield Static("", id="form-error", classes="error")
            if any(f.multiline for f in self.fields):
                yield Label("Ctrl+S submit · Esc cancel", classes="hint")
            yield Button("OK", variant="primary", id="ok")

    def on_mount(self) -> None:
        self.query(f"#field-{self.fields[0].name}").first().focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        boxes = [self.query_one(f"#field-{f.name}") for f in self.fields]
        index = boxes.index(event.input)
        if index + 1 < len(boxes):
            boxes[index + 1].focus()
        else:
            self._submit()

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self._submit()

    def action_submit(self) -> None:
        self._submit()

    def _value(self, f: Field) -> str:
        box = self.query_one(f"#field-{f.name}")
        if isinstance(box, TextArea):
            return box.text
        assert isinstance(box, Input)
        return box.value

    def _submit(self) -> None:
        values = {f.name: self._value(f) for f in self.fields}
        missing = [f.label for f in self.fields if f.required and not values[f.name].strip()]
        if missing:
            self.query_one("#form-error", Static).update(f"needed: {', '.join(missing)}")
            return
        self.dismiss(values)

    def action_dismiss_form(self) -> None:
        self.dismiss(None)


class EditorScreen(Dialog[str | None]):
    """A text editor for a proposal's content: Ctrl+S approves the edited text."""

    BINDINGS: ClassVar = [
        Binding("ctrl+s", "save", "Approve edited"),
        Binding("escape", "dismiss_editor", "Cancel"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog editor"):
            yield Label(self.title_text, classes="dialog-title")
            yield TextArea(self.text, id="editor", show_line_numbers=True, soft_wrap=False)
            yield Label("Ctrl+S approve the edited text · Esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_dismiss_editor(self) -> None:
        self.dismiss(None)


class ConfirmScreen(Dialog[bool]):
    """A question with what it is about: ``y`` or Enter says yes, ``n`` or Escape no."""

    BINDINGS: ClassVar = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, lines: list[str]) -> None:
        super().__init__()
        self.question = question
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            yield Static("\n".join(self.lines), markup=True, id="confirm-about")
            yield Label("y / Enter: yes · n / Esc: no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class HelpScreen(Dialog[None]):
    """Every key of the console, and what it does."""

    BINDINGS: ClassVar = [Binding("escape,question_mark,q", "dismiss_help", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        """``sections``: (where the keys work, [(key, what it does)]) each."""
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        lines = "\n".join(
            f"[b]{escape(title)}[/b]"
            + "".join(f"\n  [b]{escape(key):>8}[/b]  {escape(what)}" for key, what in keys)
            for title, keys in self.sections
            if keys
        )
        with Vertical(classes="dialog"):
            yield Label("Keys", classes="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(lines, markup=True, id="help-keys")
            yield Label("Ctrl+P: command palette · Esc: close", classes="hint")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
