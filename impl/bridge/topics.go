package bridge

import "strings"

// match reports whether topic name t matches filter f (MQTT 4.7: '+' one
// level, '#' the parent level and everything below, wildcards at the start
// do not match '$' topics). Both are assumed valid.
func match(f, t string) bool {
	if strings.HasPrefix(t, "$") && (strings.HasPrefix(f, "+") || strings.HasPrefix(f, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(t, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// The topic ended: only a final "/#" still matches (the parent).
			return frest == "#"
		case !fmore:
			return false
		}
		f, t = frest, trest
	}
}

// filtersOverlap reports whether some topic name matches both filters.
func filtersOverlap(a, b string) bool {
	aw := strings.HasPrefix(a, "+") || strings.HasPrefix(a, "#")
	bw := strings.HasPrefix(b, "+") || strings.HasPrefix(b, "#")
	if aw && strings.HasPrefix(b, "$") && !bw || bw && strings.HasPrefix(a, "$") && !aw {
		return false // a '$' topic never matches a filter starting with a wildcard
	}
	for {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case !amore && !bmore:
			return true
		case !amore:
			return brest == "#"
		case !bmore:
			return arest == "#"
		}
		a, b = arest, brest
	}
}

// mapTopic gives a topic its name on the other side: Strip removed from
// its start, Prefix added. A topic equal to Strip without its trailing
// '/' (the parent level "a" that filter "a/#" also matches) maps to Prefix
// without its trailing '/'. ok is false when the result is empty.
func (r *Rule) mapTopic(t string) (string, bool) {
	rest, found := strings.CutPrefix(t, r.Strip)
	if !found {
		if r.Strip == "" || t+"/" != r.Strip {
			return "", false
		}
		out := strings.TrimSuffix(r.Prefix, "/")
		return out, out != ""
	}
	out := r.Prefix + rest
	return out, out != ""
}
