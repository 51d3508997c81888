package filter

import "fmt"

// Error is a mistake in an expression: what is wrong and the 1-based
// column of the token it is about. Hint, when set, is a likely correction.
type Error struct {
	Col  int
	Msg  string
	Hint string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("filter: %s at column %d", e.Msg, e.Col)
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

func errorf(col int, format string, args ...any) *Error {
	return &Error{Col: col, Msg: fmt.Sprintf(format, args...)}
}

// suggest returns `did you mean "x"?` for the candidate closest to word,
// when one is close enough to be a typo.
func suggest(word string, candidates []string) string {
	best, bestDist := "", len(word)/2+2
	for _, c := range candidates {
		if d := distance(word, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" || bestDist > max(2, len(word)/3) {
		return ""
	}
	return fmt.Sprintf("did you mean %q?", best)
}

// distance is the Damerau (optimal string alignment) edit distance: a
// swapped pair of letters counts as one typo.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
