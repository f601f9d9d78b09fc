// A partner's integration with cofab from Node.js: it loads the versioned .proto contract,
// authenticates with a bearer token and lists what its organization can see.
//
//   COFAB_TOKEN=cofab_... COFAB_DESIGN_ADDRESS=127.0.0.1:50051 node index.js
//
// Prints one JSON document (caller identity and projects) on stdout; a gRPC error prints
// "CODE: message" on stderr and exits 1.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.join(__dirname, "..", "..", "proto");
// The contract's field annotations import google/api/field_behavior.proto and resource.proto
// from googleapis; `make install` puts copies here (a partner can use any copy of them).
const GOOGLEAPIS_ROOT = path.join(PROTO_ROOT, "third_party", "googleapis");

function loadIdentityPackage() {
  const definition = protoLoader.loadSync("cofab/identity/v1/identity.proto", {
    includeDirs: [PROTO_ROOT, GOOGLEAPIS_ROOT],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).cofab.identity.v1;
}

function credentials(token) {
  const channel = process.env.COFAB_TLS_CA_FILE
    ? grpc.credentials.createSsl(require("node:fs").readFileSync(process.env.COFAB_TLS_CA_FILE))
    : grpc.credentials.createInsecure();
  // Plaintext channels refuse call credentials, so the token goes in as call metadata.
  return { channel, metadata: () => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    return metadata;
  } };
}

function call(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(), { deadline: Date.now() + 10000 }, (error, response) =>
      error ? reject(error) : resolve(response));
  });
}

async function main() {
  const token = process.env.COFAB_TOKEN;
  if (!token) {
    console.error("COFAB_TOKEN is not set");
    return 1;
  }
  const address = process.env.COFAB_DESIGN_ADDRESS || "127.0.0.1:50051";
  const identity = loadIdentityPackage();
  const { channel, metadata } = credentials(token);
  const identityClient = new identity.IdentityService(address, channel);
  const projectClient = new identity.ProjectService(address, channel);
  try {
    const me = await call(identityClient, "getCallerIdentity", {}, metadata);
    const projects = [];
    let pageToken = "";
    do {
      const page = await call(projectClient, "listProjects", { pageSize: 100, pageToken }, metadata);
      projects.push(...page.projects.map((p) => ({ name: p.name, displayName: p.displayName, role: p.callerRole })));
      pageToken = page.nextPageToken;
    } while (pageToken);
    console.log(JSON.stringify({ organization: me.organization, user: me.user, projects }, null, 2));
    return 0;
  } catch (error) {
    console.error(`${grpc.status[error.code]}: ${error.details}`);
    return 1;
  } finally {
    identityClient.close();
    projectClient.close();
  }
}

main().then((code) => { process.exitCode = code; });
