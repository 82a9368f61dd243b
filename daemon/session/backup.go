package session

// BackupInbox writes a consistent copy of the wall's inbox to path (see
// queue.Inbox.BackupTo): it waits for an Append in progress and holds the
// next one back only for the copy.
func (w *Wall) BackupInbox(path string) error { return w.inbox.BackupTo(path) }
