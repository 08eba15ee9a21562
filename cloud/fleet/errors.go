package fleet

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a refusal with the HTTP status the REST API answers with.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// StatusOf returns the HTTP status of err (500 when it is not an *Error).
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return http.StatusInternalServerError
}

func errf(status int, format string, args ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

func notFound(kind, name string) error {
	return errf(http.StatusNotFound, "%s %q not found", kind, name)
}

func invalid(err error) error { return &Error{Status: http.StatusBadRequest, Msg: err.Error()} }
