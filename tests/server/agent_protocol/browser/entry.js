// Bundled by esbuild into dist/sdk.js: the official SDK as one ES module a page can import.
export { Client } from "@langchain/langgraph-sdk";
