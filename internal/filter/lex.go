package filter

import (
	"strings"
)

// tokKind is a token's grammatical role. Keywords ("and", "gt", …) are
// told apart by the lexer, as ss's yylex does, wherever they appear.
type tokKind uint8

const (
	tEOF tokKind = iota
	tWord
	tLParen
	tRParen
	tNot // ! not
	tAnd // & && and
	tOr  // | || or
	tEq  // = == eq
	tNeq // != ne neq
	tLt  // < lt
	tGt  // > gt
	tLe  // <= le leq
	tGe  // >= ge geq
)

// token is one lexeme and the 1-based column where it starts in the
// expression.
type token struct {
	kind tokKind
	text string
	col  int
	lit  bool // a word with escapes: never a keyword
}

var wordKinds = map[string]tokKind{
	"not": tNot, "and": tAnd, "or": tOr,
	"eq": tEq, "ne": tNeq, "neq": tNeq, "lt": tLt, "gt": tGt,
	"le": tLe, "leq": tLe, "ge": tGe, "geq": tGe,
}

// lex splits an expression into tokens. ss separates tokens by blanks; we
// also split parentheses and the operators =, !, <, >, &, | from the words
// they touch, so "(dport>=:80)" reads like "( dport >= :80 )". A backslash
// makes the next character part of a word, as in ss.
func lex(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, token{kind: tLParen, text: "(", col: i + 1})
			i++
		case c == ')':
			toks = append(toks, token{kind: tRParen, text: ")", col: i + 1})
			i++
		case strings.IndexByte(opChars, c) >= 0:
			j := i
			for j < len(s) && strings.IndexByte(opChars, s[j]) >= 0 && j-i < 2 {
				j++
			}
			op := s[i:j]
			kind, ok := opKinds[op]
			if !ok && len(op) == 2 {
				// "!!" or "=!": take one character at a time.
				op, j = s[i:i+1], i+1
				kind, ok = opKinds[op]
			}
			if !ok {
				return nil, errorf(i+1, "unexpected %q", op)
			}
			toks = append(toks, token{kind: kind, text: op, col: i + 1})
			i = j
		default:
			start, escaped := i, false
			var b strings.Builder
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					escaped = true
					continue
				}
				if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ')' || strings.IndexByte(opChars, c) >= 0 {
					break
				}
				b.WriteByte(c)
				i++
			}
			w := b.String()
			kind := tWord
			if k, ok := wordKinds[w]; ok && !escaped {
				kind = k
			}
			toks = append(toks, token{kind: kind, text: w, col: start + 1, lit: escaped})
		}
	}
	return append(toks, token{kind: tEOF, col: len(s) + 1}), nil
}

const opChars = "=!<>&|"

var opKinds = map[string]tokKind{
	"!": tNot, "&": tAnd, "&&": tAnd, "|": tOr, "||": tOr,
	"=": tEq, "==": tEq, "!=": tNeq, "<": tLt, ">": tGt, "<=": tLe, ">=": tGe,
}
