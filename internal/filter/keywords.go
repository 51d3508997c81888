package filter

import "slices"

// Keywords are the words that start a condition, for shell completion.
func Keywords() []string { return slices.Clone(keywords) }
