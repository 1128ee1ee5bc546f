// Command cdk is meter's AWS CDK app: `cdk deploy` (run in infra/cdk) builds
// the four Lambda functions for linux/arm64 and deploys the stack of
// meterstack with the operator's config.
//
// The config file is the context value meter:config (cdk deploy -c
// meter:config=FILE), else $METER_CDK_CONFIG, else meter.json beside cdk.json;
// meter.example.json shows every field. A wrong config stops the synth with
// one line per field.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/meter-dev/meter/infra/cdk/meterstack"
)

func main() {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	if err := build(app); err != nil {
		fmt.Fprintln(os.Stderr, "meter stack:", err)
		os.Exit(1)
	}
	app.Synth(nil)
}

func build(app awscdk.App) error {
	path := "meter.json"
	if v, ok := app.Node().TryGetContext(jsii.String("meter:config")).(string); ok && v != "" {
		path = v
	} else if v := os.Getenv("METER_CDK_CONFIG"); v != "" {
		path = v
	}
	cfg, err := meterstack.LoadConfig(path)
	if err != nil {
		return err
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		return fmt.Errorf("%s:\n%w", path, err)
	}
	// The assets go beside the cloud assembly; cdk copies them into it.
	outdir := *app.Outdir()
	cfg.AssetsDir = filepath.Join(filepath.Dir(outdir), filepath.Base(outdir)+"-functions")
	if err := meterstack.BuildAssets(filepath.Join("..", ".."), cfg.AssetsDir); err != nil {
		return err
	}
	_, err = meterstack.New(app, cfg)
	return err
}
