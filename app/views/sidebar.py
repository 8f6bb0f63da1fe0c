"""Conversations: new, search, open, rename (F2 / double-click), delete (Del, with Undo)."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import icons
from app.store import Conversation
from app.theme import LIGHT, Colors

ID_ROLE = Qt.ItemDataRole.UserRole


def when(ts: float) -> str:
    """'14:02', 'Yesterday', 'Mon', or '3 Mar 2025' (tooltips and search results)."""
    now = time.localtime()
    t = time.localtime(ts)
    if t.tm_yday == now.tm_yday and t.tm_year == now.tm_year:
        return time.strftime("%H:%M", t)
    days = (time.time() - ts) / 86400
    if days < 2:
        return "Yesterday"
    if days < 7:
        return time.strftime("%a", t)
    return time.strftime("%d %b %Y", t)


class Sidebar(QWidget):
    open_requested = Signal(int)
    new_requested = Signal()
    rename_requested = Signal(int, str)
    delete_requested = Signal(int)
    search_changed = Signal(str)

    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.colors = colors
        self._filling = False
        box = QVBoxLayout(self)
        box.setContentsMargins(8, 10, 8, 8)
        box.setSpacing(8)
        self.new_button = QPushButton("  New chat")
        self.new_button.setObjectName("newChatButton")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.new_requested)
        box.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setObjectName("searchBox")
        self.search.setPlaceholderText("Search conversations (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        # search as you type, but not a query per keystroke
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(150)
        self._search_timer.timeout.connect(lambda: self.search_changed.emit(self.search.text().strip()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        box.addWidget(self.search)
        self.list = QListWidget()
        self.list.setObjectName("conversationList")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)  # long titles end in "…", no sideways scrolling
        self.list.setUniformItemSizes(True)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed
                                  | QAbstractItemView.EditTrigger.DoubleClicked)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.currentItemChanged.connect(self._on_current)
        self.list.itemChanged.connect(self._on_edited)
        box.addWidget(self.list, 1)
        delete = QAction("Delete conversation", self.list)
        delete.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        delete.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        delete.triggered.connect(self._delete_current)
        self.list.addAction(delete)
        self.set_colors(colors)

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        self.new_button.setIcon(icons.icon("new-chat", colors.text))
        if not hasattr(self, "_search_icon"):
            self._search_icon = self.search.addAction(
                icons.icon("search", colors.muted), QLineEdit.ActionPosition.LeadingPosition
            )
        self._search_icon.setIcon(icons.icon("search", colors.muted))

    def refresh(self, conversations: list[Conversation], current: int | None) -> None:
        self._filling = True
        self.list.clear()
        for conv in conversations:
            item = QListWidgetItem(conv.title)
            item.setData(ID_ROLE, conv.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            item.setToolTip(f"{conv.title}\nlast message: {when(conv.updated_at)}")
            self.list.addItem(item)
            if conv.id == current:
                self.list.setCurrentItem(item)
        self._filling = False

    def select(self, conv_id: int | None) -> None:
        self._filling = True
        self.list.setCurrentItem(None)
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ID_ROLE) == conv_id:
                self.list.setCurrentItem(item)
        self._filling = False

    def ids(self) -> list[int]:
        return [self.list.item(i).data(ID_ROLE) for i in range(self.list.count())]

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def rename_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.list.editItem(item)

    def _on_current(self, item: QListWidgetItem | None, _previous: Any) -> None:
        if item is not None and not self._filling:
            self.open_requested.emit(int(item.data(ID_ROLE)))

    def _on_edited(self, item: QListWidgetItem) -> None:
        if not self._filling:
            self.rename_requested.emit(int(item.data(ID_ROLE)), item.text())

    def _delete_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.delete_requested.emit(int(item.data(ID_ROLE)))

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        menu = QMenu(self)
        menu.addAction("Rename", lambda: self.list.editItem(item))
        menu.addAction("Delete", lambda: self.delete_requested.emit(int(item.data(ID_ROLE))))
        menu.exec(self.list.mapToGlobal(pos))
