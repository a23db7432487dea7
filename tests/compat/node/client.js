// Loads one configuration with the stock Node.js Spring Cloud Config client and prints what an
// application would see: { version, label, properties, object }.
// usage: node client.js ENDPOINT NAME PROFILES [LABEL]
"use strict";
const client = require("cloud-config-client");

const [endpoint, name, profiles, label] = process.argv.slice(2);
client
  .load({ endpoint, name, profiles: profiles.split(","), label })
  .then((config) => {
    process.stdout.write(JSON.stringify({
      version: config.raw.version,
      label: config.raw.label,
      properties: config.properties,
      object: config.toObject(),
    }));
  })
  .catch((error) => {
    process.stderr.write(String(error && error.message ? error.message : error) + "\n");
    process.exit(1);
  });
