package group

// Exists reports whether id names a group this coordinator holds (with
// members or only committed offsets). A group id is one type only: the
// share-group coordinator refuses ids that are consumer groups.
func (c *Coordinator) Exists(id string) bool {
	c.lock()
	defer c.unlock()
	_, ok := c.groups[id]
	return ok
}
