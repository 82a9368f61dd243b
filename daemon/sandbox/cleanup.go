package sandbox

// cleanup is a stack of undo actions, released only when an operation fully succeeds
// (the pattern gVisor uses). A half-built sandbox — a bundle without a process, a process
// without its bookkeeping — is undone in reverse order on any early return.
type cleanup struct {
	fns []func()
}

// add pushes an undo action.
func (c *cleanup) add(f func()) { c.fns = append(c.fns, f) }

// release forgets every action: call it once the operation has succeeded.
func (c *cleanup) release() { c.fns = nil }

// clean runs the remaining actions, last added first. Deferred right after creation.
func (c *cleanup) clean() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}
