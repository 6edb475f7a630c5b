var zoetropeErrors = [];
function zoetropeRecordError(msg) {
  zoetropeErrors.push(String(msg));
  var el = document.getElementById("errors");
  el.textContent = zoetropeErrors.join("\n");
  el.hidden = false;
}
window.onerror = function (msg, src, line, col) {
  zoetropeRecordError("error: " + msg + " (" + src + ":" + line + ":" + col + ")");
  return false;
};
window.addEventListener("unhandledrejection", function (e) {
  zoetropeRecordError("unhandled rejection: " + e.reason);
});
