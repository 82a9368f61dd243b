package profile

// ByName returns the limits keyed by the names the canonical rendering uses
// after "limit." (memory_mib, cpu_millis, …), so that other packages — the
// policy rules in particular — name limits exactly as the owner sees them in
// a diff.
func (l Limits) ByName() map[string]int64 {
	p := Profile{Limits: l}
	m := make(map[string]int64, 7)
	for _, f := range p.limitFields() {
		m[f.name] = *f.v
	}
	return m
}

// LimitNames lists the limit names in canonical order.
func LimitNames() []string {
	var p Profile
	fields := p.limitFields()
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return names
}

// ByName returns the permissions keyed by the names the canonical rendering
// uses after "permission.".
func (p Permissions) ByName() map[string]bool {
	return map[string]bool{
		"schedule": p.Schedule,
		"memory":   p.Memory,
		"notes":    p.Notes,
	}
}
