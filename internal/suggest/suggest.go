// Package suggest finds the known name a mistyped one was meant to be, for
// "did you mean ...?" hints in the command line and configuration errors.
package suggest

// Nearest returns the candidate closest to word in edit distance, if it is
// close enough to be what was meant: at most 2 edits, and fewer edits than
// half of word's length. "" when none is.
func Nearest(word string, cands []string) string {
	best, bestD := "", 3
	for _, c := range cands {
		if d := editDistance(word, c); d < bestD && 2*d < len(word) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes; names are ASCII).
// Cost: len(a) x len(b).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
