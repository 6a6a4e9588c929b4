"""The current page as simplified HTML (REWARD_CONTRACT.md §1): no scripts or styles,
one line per element the shopper can act on, each with a unique ``name`` attribute.

The name is written as it is, not entity-escaped (``name="Classes & Events"``), so that
the name a policy must answer is exactly the one it reads; a name holding a double quote
is written between single quotes.
"""

from __future__ import annotations

from dataclasses import dataclass

# Mind2Web's element roles, drawn as the tag a simplified page would use.
_ROLE_TAGS = {
    "[button]": "button",
    "[link]": "a",
    "[a]": "a",
    "[img]": "img",
    "[option]": "option",
    "[select]": "select",
    "[combobox]": "select",
    "[checkbox]": "input type=\"checkbox\"",
    "[radio]": "input type=\"radio\"",
    "[heading]": "h3",
}
_VOID_TAGS = ("input", "img")


@dataclass(frozen=True, slots=True)
class Element:
    """An element of a page: its ``name``, whether it takes typed text, and its role."""

    name: str
    typable: bool
    role: str = ""

    def html(self) -> str:
        """``<tag name="...">`` for this element (inputs take typed text)."""
        quote = "'" if '"' in self.name and "'" not in self.name else '"'
        name = self.name.replace('"', "&quot;") if quote == '"' else self.name
        if self.typable:
            return f'<input type="text" name={quote}{name}{quote}>'
        tag = _ROLE_TAGS.get(self.role, "span")
        closing = tag.split(" ", 1)[0]
        if closing in _VOID_TAGS:
            return f"<{tag} name={quote}{name}{quote}>"
        return f"<{tag} name={quote}{name}{quote}></{closing}>"


def render_page(site: str, elements: list[Element]) -> str:
    """The page of ``site`` holding ``elements`` in the given order, one a line."""
    body = "\n".join(element.html() for element in elements)
    return f"<html><body>\n<header>{site}</header>\n{body}\n</body></html>"
