package manifest

import "slices"

// Changes sorts every resource of a desired and a persisted manifest into
// exactly one category (SPEC §2.4). Each list is sorted by name.
type Changes struct {
	New       []string `json:"new"`       // in desired only
	Changed   []string `json:"changed"`   // in both, config hash differs
	Removed   []string `json:"removed"`   // in persisted only
	Unchanged []string `json:"unchanged"` // in both, same config hash
}

// Empty reports whether nothing is new, changed or removed.
func (c Changes) Empty() bool { return len(c.New)+len(c.Changed)+len(c.Removed) == 0 }

// Diff compares desired with persisted by config hash. Either may be nil
// (no manifest): every resource of the other is then new or removed.
func Diff(desired, persisted *Manifest) Changes {
	c := Changes{New: []string{}, Changed: []string{}, Removed: []string{}, Unchanged: []string{}}
	var want, have map[string]*Resource
	if desired != nil {
		want = desired.Resources
	}
	if persisted != nil {
		have = persisted.Resources
	}
	for name, r := range want {
		old, ok := have[name]
		switch {
		case !ok:
			c.New = append(c.New, name)
		case old.Hash() != r.Hash():
			c.Changed = append(c.Changed, name)
		default:
			c.Unchanged = append(c.Unchanged, name)
		}
	}
	for name := range have {
		if _, ok := want[name]; !ok {
			c.Removed = append(c.Removed, name)
		}
	}
	for _, l := range [][]string{c.New, c.Changed, c.Removed, c.Unchanged} {
		slices.Sort(l)
	}
	return c
}
