package worker

// Free exposes free to the tests: how many jobs the dispatcher would claim
// now.
func (p *Pool) Free() int { return p.free() }
