// Starts GraphiQL on the page the server rendered. The settings are the
// JSON in #playground-config: the page has no inline script, so its
// Content-Security-Policy can allow only the scripts this server serves.
'use strict';
(() => {
  const config = JSON.parse(document.getElementById('playground-config').textContent);
  const url = new URL(config.endpoint, location.href);
  const subscriptionUrl = new URL(url);
  subscriptionUrl.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  // Queries and mutations go over HTTP; subscriptions over
  // graphql-transport-ws at the same endpoint. The headers of the Headers
  // tab go with both: as HTTP headers, and as the connection_init payload
  // ({"Authorization": "Bearer …"}), which the server reads.
  const fetcher = GraphiQL.createFetcher({ url: url.href, subscriptionUrl: subscriptionUrl.href });
  const props = {
    fetcher,
    // Shown to a first visit; later visits get their own tabs back.
    defaultQuery: config.example,
    isHeadersEditorEnabled: true,
    // A token typed in the Headers tab stays in the tab's memory, not in
    // localStorage.
    shouldPersistHeaders: false,
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
  };
  if (config.headers) {
    // With authentication on, the Headers tab opens with the header to
    // fill in.
    props.defaultHeaders = config.headers;
    props.defaultEditorToolsVisibility = 'headers';
  }
  ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props));
})();
