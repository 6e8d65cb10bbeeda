// Package srcdiff tells whether two versions of a Go source file differ only
// in the configuration of flash resources: the flash.ResourceConfig literals
// passed straight to App.Queue or App.LoadBalanced. The flash library reads
// such a literal only to describe its resource in the manifest, so two builds
// whose sources differ only there run the same code, and a resource whose
// manifest entry is the same in both behaves the same on either binary. flash
// dev relies on it to restart only the resources whose entry changed.
package srcdiff

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"slices"
	"strconv"
)

// FlashPath is the import path of the flash library.
const FlashPath = "github.com/flash-go/flash"

// ConfigOnly reports whether a and b, two versions of one Go file, are the
// same program text once the config literals of each are set aside: the same
// tokens in the same order, positions aside. Comments count (build
// constraints, directives and cgo preambles live in them). A file that does
// not parse differs from every other version.
func ConfigOnly(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ta, ok := tokens(a)
	if !ok {
		return false
	}
	tb, ok := tokens(b)
	return ok && slices.Equal(ta, tb)
}

// tok is one token of a file, its position aside.
type tok struct {
	t   token.Token
	lit string
}

// configMark stands for a config literal in a token list.
var configMark = tok{t: token.ILLEGAL, lit: "flash.ResourceConfig{…}"}

// tokens lists src's tokens with every config literal replaced by configMark.
func tokens(src []byte) ([]tok, bool) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", src, parser.SkipObjectResolution)
	if err != nil {
		return nil, false
	}
	spans := configLiterals(f)
	var s scanner.Scanner
	file := fset.File(f.Pos())
	bad := false
	s.Init(file, src, func(token.Position, string) { bad = true }, scanner.ScanComments)
	var out []tok
	for {
		pos, t, lit := s.Scan()
		if t == token.EOF {
			break
		}
		if i, in := within(spans, pos); in {
			if pos == spans[i].Pos() {
				out = append(out, configMark)
			}
			continue
		}
		if t == token.SEMICOLON {
			lit = "" // a newline or a ';': the same token
		}
		out = append(out, tok{t, lit})
	}
	return out, !bad
}

// within reports the span of spans (sorted, disjoint) that holds pos.
func within(spans []*ast.CompositeLit, pos token.Pos) (int, bool) {
	i, _ := slices.BinarySearchFunc(spans, pos, func(l *ast.CompositeLit, p token.Pos) int {
		switch {
		case l.End() <= p:
			return -1
		case l.Pos() > p:
			return 1
		}
		return 0
	})
	return i, i < len(spans) && spans[i].Pos() <= pos && pos < spans[i].End()
}

// configLiterals finds, in source order, the flash.ResourceConfig literals of
// f that are the second argument of a call of a method named Queue or
// LoadBalanced and hold only data (no call, no function).
func configLiterals(f *ast.File) []*ast.CompositeLit {
	name, ok := flashName(f)
	if !ok {
		return nil
	}
	var out []*ast.CompositeLit
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 2 || call.Ellipsis.IsValid() {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Queue" && sel.Sel.Name != "LoadBalanced") {
			return true
		}
		lit, ok := call.Args[1].(*ast.CompositeLit)
		if ok && isConfigType(lit.Type, name) && data(lit) {
			out = append(out, lit)
			return false // nothing inside is another call
		}
		return true
	})
	return out
}

// flashName is the name f imports the flash library under ("." when dot-imported).
func flashName(f *ast.File) (string, bool) {
	for _, imp := range f.Imports {
		if p, err := strconv.Unquote(imp.Path.Value); err != nil || p != FlashPath {
			continue
		}
		if imp.Name != nil {
			return imp.Name.Name, imp.Name.Name != "_"
		}
		return "flash", true
	}
	return "", false
}

func isConfigType(e ast.Expr, flash string) bool {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && x.Name == flash && e.Sel.Name == "ResourceConfig"
	case *ast.Ident:
		return flash == "." && e.Name == "ResourceConfig"
	}
	return false
}

// data reports whether evaluating e only builds a value: literals, names,
// field selections and operators; no call (conversions included), function,
// index or receive, which could do or read something at run time.
func data(e ast.Expr) bool {
	switch e := e.(type) {
	case nil:
		return true
	case *ast.BasicLit, *ast.Ident:
		return true
	case *ast.CompositeLit:
		if !dataType(e.Type) {
			return false
		}
		for _, el := range e.Elts {
			if !data(el) {
				return false
			}
		}
		return true
	case *ast.KeyValueExpr:
		return data(e.Key) && data(e.Value)
	case *ast.UnaryExpr:
		return e.Op != token.ARROW && data(e.X)
	case *ast.BinaryExpr:
		return data(e.X) && data(e.Y)
	case *ast.ParenExpr:
		return data(e.X)
	case *ast.SelectorExpr:
		return data(e.X)
	}
	return false
}

// dataType reports whether a composite literal's type is a plain type
// expression (elided types included).
func dataType(e ast.Expr) bool {
	switch e := e.(type) {
	case nil, *ast.Ident:
		return true
	case *ast.SelectorExpr:
		_, ok := e.X.(*ast.Ident)
		return ok
	case *ast.MapType:
		return dataType(e.Key) && dataType(e.Value)
	case *ast.ArrayType:
		_, isLit := e.Len.(*ast.BasicLit)
		_, isEllipsis := e.Len.(*ast.Ellipsis)
		return (e.Len == nil || isLit || isEllipsis) && dataType(e.Elt)
	case *ast.InterfaceType:
		return e.Methods == nil || len(e.Methods.List) == 0
	}
	return false
}
