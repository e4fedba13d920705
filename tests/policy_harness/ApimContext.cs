// A stand-in for the APIM gateway's `context` (and only that: JSON is the real Newtonsoft.Json),
// plus a tiny runner that plays one request through the policy sections the way the gateway does.
//
// tests/test_policy.py extracts every C# expression from the policy XML, wraps each one in a static
// method taking `Context context`, turns the XML's control flow into calls on `Runner`, compiles
// all of it with `mcs -langversion:7` and runs the scenarios (JSON files) given on the command line.
// The members below follow the documented APIM context model (api-management-policy-expressions):
// read-only context, IReadOnlyDictionary headers with GetValueOrDefault, IMessageBody.As<T> whose
// content is gone after a read without preserveContent, Variables.GetValueOrDefault<T> that throws
// on a type mismatch.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace ApimStandIn
{
    public sealed class NameValues : IReadOnlyDictionary<string, string[]>
    {
        private readonly Dictionary<string, string[]> items =
            new Dictionary<string, string[]>(StringComparer.OrdinalIgnoreCase);

        public NameValues() { }

        public NameValues(JObject values)
        {
            if (values == null) { return; }
            foreach (var property in values.Properties())
            {
                items[property.Name] = property.Value.Type == JTokenType.Array
                    ? property.Value.Select(v => (string)v).ToArray()
                    : new[] { (string)property.Value };
            }
        }

        /// Comma-separated values of the name, or defaultValue when absent (as APIM documents).
        public string GetValueOrDefault(string name, string defaultValue)
        {
            string[] values;
            return items.TryGetValue(name, out values) ? string.Join(",", values) : defaultValue;
        }

        public void Set(string name, string value) { items[name] = new[] { value }; }

        public string[] this[string key] { get { return items[key]; } }
        public IEnumerable<string> Keys { get { return items.Keys; } }
        public IEnumerable<string[]> Values { get { return items.Values; } }
        public int Count { get { return items.Count; } }
        public bool ContainsKey(string key) { return items.ContainsKey(key); }
        public bool TryGetValue(string key, out string[] value) { return items.TryGetValue(key, out value); }
        public IEnumerator<KeyValuePair<string, string[]>> GetEnumerator() { return items.GetEnumerator(); }
        IEnumerator IEnumerable.GetEnumerator() { return items.GetEnumerator(); }
    }

    public sealed class Url
    {
        public Url(string url)
        {
            var uri = new Uri(url);
            Scheme = uri.Scheme;
            Host = uri.Host;
            Port = uri.Port;
            Path = uri.AbsolutePath;
            QueryString = uri.Query;
            var query = new JObject();
            foreach (var pair in uri.Query.TrimStart('?').Split(new[] { '&' }, StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = pair.Split(new[] { '=' }, 2);
                query[Uri.UnescapeDataString(parts[0])] = parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "";
            }
            Query = new NameValues(query);
        }

        public string Scheme { get; private set; }
        public string Host { get; private set; }
        public int Port { get; private set; }
        public string Path { get; private set; }
        public string QueryString { get; private set; }
        public NameValues Query { get; private set; }
        public override string ToString() { return Scheme + "://" + Host + Path + QueryString; }
    }

    /// IMessageBody: As<T> reads the body; without preserveContent the content is gone afterwards.
    public sealed class MessageBody
    {
        private string content;
        private bool consumed;

        public MessageBody(string content) { this.content = content; }

        /// How often a policy read this body: reading a stream's body makes the gateway buffer it.
        public int Reads { get; private set; }

        public T As<T>(bool preserveContent = false)
        {
            Reads++;
            if (consumed) { throw new InvalidOperationException("body already read without preserveContent"); }
            if (!preserveContent) { consumed = true; }
            object value;
            if (typeof(T) == typeof(string)) { value = content; }
            else if (typeof(T) == typeof(byte[])) { value = System.Text.Encoding.UTF8.GetBytes(content); }
            else if (typeof(T) == typeof(JObject)) { value = JObject.Parse(content); }
            else if (typeof(T) == typeof(JArray)) { value = JArray.Parse(content); }
            else if (typeof(T) == typeof(JToken)) { value = JToken.Parse(content); }
            else { throw new NotSupportedException("As<" + typeof(T).Name + "> is not an APIM body type"); }
            return (T)value;
        }

        /// What the next hop (backend or client) receives; not part of the APIM surface.
        public string Peek() { return consumed ? null : content; }
    }

    public sealed class Request
    {
        public string Method { get; set; }
        public Url Url { get; set; }
        public Url OriginalUrl { get; set; }
        public NameValues Headers { get; set; }
        public MessageBody Body { get; set; }
        public string IpAddress { get; set; }
        public IReadOnlyDictionary<string, string> MatchedParameters { get; set; }
    }

    public sealed class Response
    {
        public int StatusCode { get; set; }
        public string StatusReason { get; set; }
        public NameValues Headers { get; set; }
        public MessageBody Body { get; set; }
    }

    public sealed class Subscription
    {
        public string Id { get; set; }
        public string Name { get; set; }
        public string Key { get; set; }
        public string PrimaryKey { get; set; }
        public string SecondaryKey { get; set; }
    }

    public sealed class Named
    {
        public string Id { get; set; }
        public string Name { get; set; }
    }

    public sealed class User
    {
        public string Id { get; set; }
        public string Email { get; set; }
    }

    public sealed class DeploymentInfo
    {
        public string Region { get; set; }
        public string ServiceName { get; set; }
        public string GatewayId { get; set; }
    }

    public sealed class LastError
    {
        public string Source { get; set; }
        public string Reason { get; set; }
        public string Message { get; set; }
        public string Scope { get; set; }
        public string Section { get; set; }
        public string Path { get; set; }
        public string PolicyId { get; set; }
    }

    /// context.Variables: read-only to expressions; set-variable writes through the runner.
    public sealed class Variables : IReadOnlyDictionary<string, object>
    {
        private readonly Dictionary<string, object> items = new Dictionary<string, object>();

        /// APIM: the value cast to T, defaultValue when absent; throws when the type does not match.
        public T GetValueOrDefault<T>(string name, T defaultValue)
        {
            object value;
            if (!items.TryGetValue(name, out value)) { return defaultValue; }
            if (value is T) { return (T)value; }
            throw new InvalidCastException("variable " + name + " is " + (value == null ? "null" : value.GetType().Name) + ", not " + typeof(T).Name);
        }

        public T GetValueOrDefault<T>(string name) { return GetValueOrDefault(name, default(T)); }

        internal void Set(string name, object value) { items[name] = value; }

        public object this[string key] { get { return items[key]; } }
        public IEnumerable<string> Keys { get { return items.Keys; } }
        public IEnumerable<object> Values { get { return items.Values; } }
        public int Count { get { return items.Count; } }
        public bool ContainsKey(string key) { return items.ContainsKey(key); }
        public bool TryGetValue(string key, out object value) { return items.TryGetValue(key, out value); }
        public IEnumerator<KeyValuePair<string, object>> GetEnumerator() { return items.GetEnumerator(); }
        IEnumerator IEnumerable.GetEnumerator() { return items.GetEnumerator(); }
    }

    public sealed class Context
    {
        public Guid RequestId { get; set; }
        public DateTime Timestamp { get; set; }
        public TimeSpan Elapsed { get; set; }
        public Request Request { get; set; }
        public Response Response { get; set; }
        public Subscription Subscription { get; set; }
        public Named Product { get; set; }
        public Named Api { get; set; }
        public Named Operation { get; set; }
        public User User { get; set; }
        public DeploymentInfo Deployment { get; set; }
        public LastError LastError { get; set; }
        public Variables Variables { get; set; }
        public bool Tracing { get; set; }
        public void Trace(string message) { }
    }

    /// Plays one scenario through the sections the way the gateway orders them.
    public sealed class Runner
    {
        public readonly Context Context;
        public readonly JObject Scenario;
        public readonly JArray Events = new JArray();
        public string Section = "inbound";
        public string ForwardedBody;
        public string BufferResponse;  // forward-request buffer-response, when the policy sets one
        public readonly List<string> ExpressionErrors = new List<string>();

        public Runner(JObject scenario)
        {
            Scenario = scenario;
            var request = (JObject)scenario["request"];
            string url = (string)request["url"];
            string kind = (string)scenario["timestampKind"] ?? "utc";
            var timestamp = DateTime.Parse((string)scenario["timestamp"] ?? "2025-03-14T09:26:53.5897932Z",
                System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal);
            if (kind == "unspecified") { timestamp = DateTime.SpecifyKind(timestamp, DateTimeKind.Unspecified); }
            var sub = scenario["subscription"] as JObject;
            Context = new Context
            {
                RequestId = Guid.Parse((string)scenario["requestId"] ?? "6f1c2e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"),
                Timestamp = timestamp,
                Request = new Request
                {
                    Method = (string)request["method"] ?? "POST",
                    // After routing, context.Request.Url is the backend's URL; OriginalUrl stays the caller's.
                    Url = new Url((string)scenario["backendUrl"] ?? url),
                    OriginalUrl = new Url(url),
                    Headers = new NameValues(request["headers"] as JObject),
                    Body = request["body"] == null || request["body"].Type == JTokenType.Null ? null : new MessageBody(BodyText(request["body"])),
                    IpAddress = (string)request["ip"] ?? "203.0.113.77",
                    MatchedParameters = new Dictionary<string, string>(),
                },
                Subscription = sub == null ? null : new Subscription
                {
                    Id = (string)sub["id"], Name = (string)sub["name"], Key = (string)sub["key"],
                    PrimaryKey = (string)sub["key"], SecondaryKey = (string)sub["key"] + "-2",
                },
                Product = new Named { Id = "aoai-standard", Name = "AOAI Standard" },
                Api = new Named { Id = "azure-openai", Name = "Azure OpenAI" },
                Operation = new Named { Id = "ChatCompletions_Create", Name = "Creates a completion" },
                User = new User { Id = "team-a-owner", Email = "owner@example.com" },
                Deployment = new DeploymentInfo { Region = "Sweden Central", ServiceName = "apim-chargeback", GatewayId = "managed" },
                Variables = new Variables(),
            };
            var vars = scenario["variables"] as JObject;
            if (vars != null) { foreach (var p in vars.Properties()) { Context.Variables.Set(p.Name, ((JValue)p.Value).Value); } }
        }

        private static string BodyText(JToken body)
        {
            return body.Type == JTokenType.String ? (string)body : body.ToString(Formatting.None);
        }

        public void SetVariable(string name, object value) { Context.Variables.Set(name, value); }

        public void SetBody(object value)
        {
            var body = new MessageBody(Convert.ToString(value));
            if (Section == "inbound" || Section == "backend") { Context.Request.Body = body; }
            else { Context.Response.Body = body; }
        }

        public void LogToEventHub(string loggerId, object partitionKey, object message)
        {
            if (Section == "inbound" || Section == "backend") { throw new InvalidOperationException("the event is emitted after the response"); }
            Events.Add(new JObject
            {
                ["loggerId"] = loggerId,
                ["partitionKey"] = Convert.ToString(partitionKey),
                ["section"] = Section,
                ["message"] = Convert.ToString(message),
            });
        }

        /// <forward-request buffer-response="..."/>: recorded; the driver forwards after the backend section.
        public void ForwardRequest(string bufferResponse) { BufferResponse = bufferResponse; }

        /// The request goes to the backend, which answers as the scenario says.
        public void Forward()
        {
            ForwardedBody = Context.Request.Body == null ? null : Context.Request.Body.Peek();
            Respond();
        }

        /// The scenario's response arrives (from the backend, or from APIM's cache without one).
        public void Respond()
        {
            var response = Scenario["response"] as JObject;
            if (response == null) { return; }
            Context.Response = new Response
            {
                StatusCode = (int)response["status"],
                StatusReason = "",
                Headers = new NameValues(response["headers"] as JObject),
                Body = response["body"] == null ? null : new MessageBody(BodyText(response["body"])),
            };
        }

        /// return-response: the caller gets this response; the rest of the pipeline does not run.
        public bool Returned;

        public void ReturnResponse(object status, object reason, string[] names, object[] values, object body)
        {
            var headers = new JObject();
            for (int i = 0; i < names.Length; i++) { headers[names[i]] = Convert.ToString(values[i]); }
            Context.Response = new Response
            {
                StatusCode = Convert.ToInt32(status),
                StatusReason = Convert.ToString(reason),
                Headers = new NameValues(headers),
                Body = body == null ? null : new MessageBody(Convert.ToString(body)),
            };
            Returned = true;
        }

        public void Fail(string source, string reason, int status)
        {
            Context.LastError = new LastError { Source = source, Reason = reason, Message = reason, Section = Section };
            if (status > 0)
            {
                Context.Response = new Response { StatusCode = status, StatusReason = reason, Headers = new NameValues(), Body = new MessageBody("") };
            }
        }

        private JObject ClientHeaders()
        {
            var headers = new JObject();
            if (Context.Response == null || Context.Response.Headers == null) { return headers; }
            foreach (var pair in Context.Response.Headers) { headers[pair.Key] = string.Join(",", pair.Value); }
            return headers;
        }

        public JObject Result()
        {
            var variables = new JObject();
            foreach (var pair in Context.Variables) { variables[pair.Key] = pair.Value == null ? null : JToken.FromObject(pair.Value); }
            return new JObject
            {
                ["name"] = Scenario["name"],
                ["events"] = Events,
                ["forwardedBody"] = ForwardedBody,
                ["clientBody"] = Context.Response == null || Context.Response.Body == null ? null : Context.Response.Body.Peek(),
                ["clientStatus"] = Context.Response == null ? 0 : Context.Response.StatusCode,
                ["clientHeaders"] = ClientHeaders(),
                ["returned"] = Returned,
                ["responseBodyReads"] = Context.Response == null || Context.Response.Body == null ? 0 : Context.Response.Body.Reads,
                ["bufferResponse"] = BufferResponse,
                ["variables"] = variables,
                ["expressionErrors"] = new JArray(ExpressionErrors.ToArray()),
            };
        }
    }
}
