package bedrocklocal_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/meter-dev/meter/internal/bedrocklocal"
)

// A call to InvokeModel answers with the token counts in headers; the input
// count is the prompt's word count (5 here).
func Example() {
	srv, err := bedrocklocal.New(bedrocklocal.Config{})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()

	resp, err := http.Post(hs.URL+"/model/amazon.titan-text-express-v1/invoke", "application/json",
		strings.NewReader(`{"inputText":"What did team alpha spend"}`))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode,
		resp.Header.Get("X-Amzn-Bedrock-Input-Token-Count"),
		resp.Header.Get("X-Amzn-Bedrock-Output-Token-Count"))

	// An injected exception comes back in Bedrock's error shape.
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/model/amazon.titan-text-express-v1/invoke",
		strings.NewReader(`{"inputText":"What did team alpha spend"}`))
	req.Header.Set(bedrocklocal.HeaderInjectError, "ThrottlingException")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, strings.Split(resp.Header.Get("X-Amzn-ErrorType"), ":")[0], string(body))
	// Output:
	// 200 5 15
	// 429 ThrottlingException {"message":"Too many requests, please wait before trying again."}
}
