package clidoc

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// roff escapes text for a roff line: backslashes, and a leading dot or
// quote that would read as a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\[u%04X]`, r) // groff reads no UTF-8 without preconv
		}
	}
	s = b.String()
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// Man writes one man page per command (tcpstat-watch.1, …) and tcpstat.1
// for the whole, into dir.
func Man(dir string, s Spec) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	write := func(name string, page func(io.Writer)) error {
		var b strings.Builder
		page(&b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("write man page: %w", err)
		}
		return nil
	}
	if err := write(s.Name+".1", func(w io.Writer) { mainPage(w, s) }); err != nil {
		return err
	}
	for _, c := range s.Commands {
		if err := write(s.Name+"-"+c.Name+".1", func(w io.Writer) { commandPage(w, s, c) }); err != nil {
			return err
		}
	}
	return nil
}

func header(w io.Writer, s Spec, title, usage string) {
	fmt.Fprintf(w, ".TH %s 1 \"\" \"%s %s\" \"User Commands\"\n", strings.ToUpper(title), s.Name, roff(s.Version))
	fmt.Fprintf(w, ".SH NAME\n%s \\- %s\n", roff(title), roff(usage))
}

func mainPage(w io.Writer, s Spec) {
	header(w, s, s.Name, s.Usage)
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B %s\n[\\fIoptions\\fR] \\fIcommand\\fR [\\fIcommand options\\fR]\n", s.Name)
	fmt.Fprintf(w, ".SH COMMANDS\n")
	for _, c := range s.Commands {
		fmt.Fprintf(w, ".TP\n.B %s %s\n%s; see \\fB%s\\-%s\\fR(1).\n", s.Name, c.Name, roff(c.Usage), s.Name, c.Name)
	}
	options(w, s.Flags)
	seeAlso(w, s, "")
}

func commandPage(w io.Writer, s Spec, c Command) {
	header(w, s, s.Name+"-"+c.Name, c.Usage)
	if c.UsageText != "" {
		// A command with its own usage text: it is the synopsis and the
		// options, verbatim.
		fmt.Fprintf(w, ".SH SYNOPSIS\n.nf\n%s\n.fi\n", roff(c.UsageText))
	} else {
		fmt.Fprintf(w, ".SH SYNOPSIS\n.B %s %s\n[\\fIoptions\\fR]", s.Name, c.Name)
		if len(c.Sub) > 0 {
			fmt.Fprintf(w, " \\fIcommand\\fR")
		}
		if c.ArgsUsage != "" {
			fmt.Fprintf(w, " \\fI%s\\fR", roff(c.ArgsUsage))
		}
		fmt.Fprintln(w)
	}
	if len(c.Sub) > 0 {
		fmt.Fprintf(w, ".SH COMMANDS\n")
		for _, sc := range c.Sub {
			args := ""
			if sc.ArgsUsage != "" {
				args = ` \fI` + roff(sc.ArgsUsage) + `\fR`
			}
			fmt.Fprintf(w, ".TP\n\\fB%s %s %s\\fR%s\n%s\n", s.Name, c.Name, sc.Name, args, roff(sc.Usage))
		}
	}
	if c.Description != "" {
		desc, examples, _ := strings.Cut(c.Description, "Examples:\n")
		if desc = strings.TrimSpace(desc); desc != "" {
			fmt.Fprintf(w, ".SH DESCRIPTION\n%s\n", roff(desc))
		}
		options(w, c.Flags)
		if examples != "" {
			fmt.Fprintf(w, ".SH EXAMPLES\n.nf\n%s\n.fi\n", roff(examples))
		}
	} else if c.UsageText == "" {
		options(w, c.Flags)
	}
	seeAlso(w, s, c.Name)
}

func options(w io.Writer, flags []Flag) {
	if len(flags) == 0 {
		return
	}
	fmt.Fprintf(w, ".SH OPTIONS\n")
	for _, f := range flags {
		var names []string
		for _, l := range f.Long {
			names = append(names, `\fB\-\-`+roff(l)+`\fR`)
		}
		for _, sh := range f.Short {
			names = append(names, `\fB\-`+roff(sh)+`\fR`)
		}
		arg := ""
		if f.Arg != "" {
			arg = ` \fI` + roff(f.Arg) + `\fR`
		}
		fmt.Fprintf(w, ".TP\n%s%s\n%s\n", strings.Join(names, ", "), arg, roff(strings.ReplaceAll(f.Usage, "`", "")))
	}
}

func seeAlso(w io.Writer, s Spec, self string) {
	var refs []string
	if self != "" {
		refs = append(refs, `\fB`+s.Name+`\fR(1)`)
	}
	for _, c := range s.Commands {
		if c.Name != self {
			refs = append(refs, `\fB`+s.Name+`\-`+c.Name+`\fR(1)`)
		}
	}
	refs = append(refs, `\fBss\fR(8)`, `\fBnetstat\fR(8)`)
	fmt.Fprintf(w, ".SH SEE ALSO\n%s\n", strings.Join(refs, ", "))
}
