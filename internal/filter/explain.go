package filter

import (
	"fmt"
	"strings"
)

// Split is an expression divided by where it runs. Kernel is what the BPF
// program can check from the socket alone: a socket it rejects cannot pass
// the whole expression. User is what user space checks on what the kernel
// let through; when Kernel is the whole expression, User is empty.
type Split struct {
	Kernel *Filter
	User   *Filter
}

// Split divides the expression. Each of the top-level "and" terms that the
// kernel can check entirely goes to the kernel; any other term goes to user
// space, and the kernel still checks the part of it that narrows the
// sockets (an "or" only if both sides can be checked there).
func (f *Filter) Split() Split {
	if f.Empty() {
		return Split{}
	}
	var user node
	for _, t := range conjuncts(f.root) {
		if !t.kernel() {
			user = and(user, t)
		}
	}
	k := kernelPart(f.root)
	return Split{Kernel: wrap(k), User: wrap(user)}
}

func wrap(n node) *Filter {
	if n == nil {
		return nil
	}
	f := &Filter{root: n, uses: uses(n)}
	f.src = f.String()
	return f
}

func and(a, b node) node {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return &andNode{a, b}
}

// conjuncts lists the terms of a top-level chain of ands.
func conjuncts(n node) []node {
	if a, ok := n.(*andNode); ok {
		return append(conjuncts(a.l), conjuncts(a.r)...)
	}
	return []node{n}
}

// kernelPart is the weakest condition the kernel can check that every
// match of n satisfies; nil means none (everything passes).
func kernelPart(n node) node {
	if n.kernel() {
		return n
	}
	switch n := n.(type) {
	case *andNode:
		return and(kernelPart(n.l), kernelPart(n.r))
	case *orNode:
		l, r := kernelPart(n.l), kernelPart(n.r)
		if l == nil || r == nil {
			return nil
		}
		return &orNode{l, r}
	}
	return nil // a negation is exact only if its operand is
}

// Explain describes the parsed expression and where each part runs in
// watch: what the BPF program checks (with its size), and what user space
// checks after it. An expression whose kernel part does not fit the
// program's maps runs in user space only, and Explain says so.
func (f *Filter) Explain() string {
	var b strings.Builder
	if f.Empty() {
		b.WriteString("expression: (empty: everything matches)\n")
		return b.String()
	}
	fmt.Fprintf(&b, "expression: %s\n", f)
	sp := f.Split()
	kf, err := f.Kernel()
	switch {
	case err != nil:
		fmt.Fprintf(&b, "kernel:     (nothing: %v)\n", err)
		sp.User = f
	case kf == nil:
		b.WriteString("kernel:     (nothing: every transition reaches user space)\n")
	default:
		fmt.Fprintf(&b, "kernel:     %s   [%d instructions, %d prefixes]\n", sp.Kernel, len(kf.Insns), len(kf.Prefixes))
	}
	if sp.User.Empty() {
		b.WriteString("user space: (nothing)\n")
	} else {
		fmt.Fprintf(&b, "user space: %s\n", sp.User)
	}
	return b.String()
}
