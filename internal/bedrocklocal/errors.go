package bedrocklocal

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// errorStatus is the HTTP status Bedrock Runtime answers each exception with.
// The keys are the names the SDK maps to its typed errors (types.<Name>).
var errorStatus = map[string]int{
	"ValidationException":           http.StatusBadRequest,
	"ServiceQuotaExceededException": http.StatusBadRequest,
	"AccessDeniedException":         http.StatusForbidden,
	"ResourceNotFoundException":     http.StatusNotFound,
	"UnknownOperationException":     http.StatusNotFound,
	"ModelTimeoutException":         http.StatusRequestTimeout,
	"ModelErrorException":           http.StatusFailedDependency,
	"ModelStreamErrorException":     http.StatusFailedDependency,
	"ThrottlingException":           http.StatusTooManyRequests,
	"ModelNotReadyException":        http.StatusTooManyRequests,
	"InternalServerException":       http.StatusInternalServerError,
	"ServiceUnavailableException":   http.StatusServiceUnavailable,
}

// errorMessage is the message each injected exception carries, worded as
// Bedrock words it.
var errorMessage = map[string]string{
	"ValidationException":           "Malformed input request, please reformat your input and try again.",
	"ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
	"AccessDeniedException":         "You don't have access to the model with the specified model ID.",
	"ResourceNotFoundException":     "The requested resource could not be found.",
	"UnknownOperationException":     "The requested operation is not supported.",
	"ModelTimeoutException":         "Model has timed out in processing the request.",
	"ModelErrorException":           "The model encountered an error while processing the request.",
	"ModelStreamErrorException":     "The model encountered an error while streaming the response.",
	"ThrottlingException":           "Too many requests, please wait before trying again.",
	"ModelNotReadyException":        "Model is not ready to serve inference requests.",
	"InternalServerException":       "The server encountered an internal error.",
	"ServiceUnavailableException":   "The service is temporarily unavailable.",
}

// apiError is a Bedrock exception: its kind is the X-Amzn-ErrorType name.
type apiError struct {
	kind    string
	message string
}

func (e *apiError) Error() string { return e.kind + ": " + e.message }

func (e *apiError) status() int {
	if s, ok := errorStatus[e.kind]; ok {
		return s
	}
	return http.StatusInternalServerError
}

func validation(format string, args ...any) *apiError {
	return &apiError{kind: "ValidationException", message: fmt.Sprintf(format, args...)}
}

func injected(kind string) *apiError {
	return &apiError{kind: kind, message: errorMessage[kind]}
}

// writeError answers with Bedrock's error shape: the exception name in
// X-Amzn-ErrorType (with the service namespace suffix Bedrock sends) and
// {"message": ...} in the body.
func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", e.kind+":http://internal.amazon.com/coral/com.amazon.bedrock/")
	w.WriteHeader(e.status())
	body, _ := json.Marshal(map[string]string{"message": e.message})
	w.Write(body)
}
