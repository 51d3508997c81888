package filter

import "testing"

// FuzzParse feeds arbitrary text to the parser: it must return a filter or
// an *Error, never panic, and a filter's canonical form must parse back to
// itself, and its compiled kernel part must decide as the expression's.
// Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"state established", "( dport = :80 or dport = :443 ) and not src [::1]",
		"sport = :22 | dport = :22 & state established", "dst inet6:[::1]:80", "comm ng*",
		"exclude listening exclude time-wait", "src 10.0.0.0/8:http", `comm a\ b`,
		"pod shop/cart-0 or not container *", "pod_namespace != kube-*",
		"dev lo and not fwmark 0x10/0xf0", "dev != if3 or dev 0x2", "fwmark = 017",
	} {
		f.Add(s)
	}
	e := testEnv(f)
	subjects := testSubjects()[:40]
	f.Fuzz(func(t *testing.T, in string) {
		flt, err := parseEnv(in, e)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Parse(%q) error %T: %v", in, err, err)
			}
			return
		}
		s := flt.String()
		again, err := parseEnv(s, e)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", s, in, err)
		}
		if again.String() != s {
			t.Fatalf("canonical form of %q: %q, then %q", in, s, again.String())
		}
		// The compiled kernel part decides as the expression's kernel part.
		kf, err := flt.Kernel()
		if err != nil {
			switch err.(type) {
			case *TooLargeError:
			case *ListOnlyError:
				if u := flt.Uses(); !u.Device && !u.Mark {
					t.Fatalf("Kernel(%q): %v, but it has no dev or fwmark", in, err)
				}
			default:
				t.Fatalf("Kernel(%q): %v", in, err)
			}
			return
		}
		k := flt.Split().Kernel
		for i := range subjects {
			if got, want := runKernel(t, kf, &subjects[i], nil), k.Match(&subjects[i]); got != want {
				t.Fatalf("%q on %+v: kernel %v, expression %v", in, subjects[i], got, want)
			}
		}
	})
}
