"""Following folders: connections, IDLE and polling, what to fetch next, cursors."""
