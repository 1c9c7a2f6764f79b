"""The page at / in a real headless Chromium against a real `rind serve` on loopback.

Each test starts the daemon with the bundled checkpoints and a fresh state directory, opens the page
in Debian's Chromium through chromium-driver (Selenium), picks a class by typing its name, submits,
watches a preview appear while the daemon holds the job (RIND_TEST_HOLD_FILE, so no test depends on
the speed of the machine), lets it finish, and checks the final image: the browser decoded it at the
model's size, and the same URL fetched here is a PNG of that size (IHDR read by hand and decoded by
Pillow). Run by Tests/web/run.sh; prints one line per test and `web: N passed, M failed` last.
"""
import argparse
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

# Generous: they bound waits for a daemon that is told when to go on, not how fast it samples.
START_TIMEOUT = 120
JOB_TIMEOUT = 600


class Daemon:
    """`rind serve --port 0` on loopback with its own state directory; knows its URL once listening."""

    def __init__(self, binary, checkpoints, work, extra=()):
        self.state = os.path.join(work, "state")
        self.hold = os.path.join(work, "hold")
        self.log_path = os.path.join(work, "daemon.log")
        env = dict(os.environ, RIND_TEST_HOLD_FILE=self.hold, OPENBLAS_THREAD_TIMEOUT="1")
        self.log = open(self.log_path, "w+")
        self.process = subprocess.Popen(
            [binary, "serve", "--checkpoints", checkpoints, "--host", "127.0.0.1", "--port", "0",
             "--state-dir", self.state, "--preview-every", "1", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = self._wait_listening()
        self._wait_ready()

    def _wait_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rind serve exited with {self.process.returncode}:\n{self.output()}")
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.output())
            if match:
                return match.group(1)
            time.sleep(0.1)
        raise RuntimeError(f"rind serve did not listen within {START_TIMEOUT} s:\n{self.output()}")

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"rind serve was not ready within {START_TIMEOUT} s:\n{self.output()}")

    def output(self):
        self.log.flush()
        with open(self.log_path) as log:
            return log.read()

    def hold_after(self, steps):
        """Workers wait once a job has done `steps` steps, until `release()`."""
        with open(self.hold, "w") as hold:
            hold.write(str(steps))

    def release(self):
        if os.path.exists(self.hold):
            os.remove(self.hold)

    def get(self, path, key=None):
        request = urllib.request.Request(self.url + "/" + path.lstrip("/"))
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()

    def stop(self):
        self.release()
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def browser(work):
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,1150", "--force-device-scale-factor=1", f"--user-data-dir={work}/chromium"):
        options.add_argument(argument)
    binary = shutil.which("chromium")
    if binary:
        options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def png_size(data):
    """(width, height) from the IHDR chunk, after checking the signature."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {data[:8]!r}"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, f"first chunk is {kind!r}, not IHDR"
    return struct.unpack(">II", data[16:24])


def wait(driver, condition, timeout, what):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def browser_errors(driver):
    """The page's console errors (a failed load, a refused content security policy, a script error)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def generate_in_page(driver, daemon, key, screenshot):
    """Picks the default model and a class by name, submits, watches a preview and the final image;
    returns the final image's PNG bytes as fetched again from the same URL."""
    status, _, body = daemon.get("models", key)
    models = json.loads(body)
    default = next(model for model in models["models"] if model["name"] == models["default_model"])
    names = default["classes"]["names"]
    assert names, f"the default model {default['name']} has no class names"

    model_select = Select(wait(driver, conditions.presence_of_element_located((By.ID, "model")), 30, "the model list"))
    wait(driver, lambda d: len(model_select.options) == len(models["models"]), 30, "the models in the list")
    assert model_select.first_selected_option.get_attribute("value") == default["name"], "the default model is preselected"
    assert driver.find_element(By.CSS_SELECTOR, "label[for=class]").text == "Class"

    # Search by part of a name, then pick one by its full name.
    wanted = names[len(names) // 2]
    class_input = driver.find_element(By.ID, "class")
    class_input.clear()
    class_input.send_keys(wanted[:-1])
    hint = driver.find_element(By.ID, "class-hint")
    wait(driver, lambda d: wanted in hint.text, 10, f"the search to offer '{wanted}'")
    class_input.clear()
    class_input.send_keys(wanted)
    wait(driver, lambda d: hint.text.startswith(f"{wanted}: class id"), 10, f"'{wanted}' to be recognised")

    steps = default["defaults"]["steps"]
    for field, value in (("seed", "7"), ("steps", str(steps))):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)

    daemon.hold_after(3)
    driver.find_element(By.ID, "submit").click()

    # The job runs 3 steps and waits: the page shows a preview of it forming.
    panel = wait(driver, conditions.visibility_of_element_located((By.ID, "job-panel")), 30, "the job panel")
    job_id = wait(driver, lambda d: panel.get_attribute("data-job"), 30, "the job id")
    image = driver.find_element(By.ID, "job-image")
    wait(driver, lambda d: "preview.png" in (image.get_attribute("data-src") or ""), JOB_TIMEOUT, "a preview")
    wait(driver, lambda d: f"step 3 of {steps}" in d.find_element(By.ID, "job-status").text, JOB_TIMEOUT, "step 3")
    assert wanted in driver.find_element(By.ID, "job-caption").text

    daemon.release()
    wait(driver, lambda d: image.get_attribute("data-status") == "succeeded", JOB_TIMEOUT, "the final image")
    assert image.get_attribute("data-job") == job_id

    # The browser decoded it at the model's size...
    size = driver.execute_script("const i = arguments[0]; return [i.complete, i.naturalWidth, i.naturalHeight];", image)
    expected = (default["image"]["width"], default["image"]["height"])
    assert size == [True, *expected], f"the browser shows {size}, expected {expected}"
    # ...and the same URL is a PNG of that size.
    source = image.get_attribute("data-src")
    assert source == f"jobs/{job_id}/image.png", source
    status, headers, data = daemon.get(source, key)
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert png_size(data) == expected, f"IHDR says {png_size(data)}"
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    assert decoded.size == expected and decoded.mode == "RGB", (decoded.size, decoded.mode)

    # The recent jobs list it, with its image.
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'#recent [data-job="{job_id}"] img[src^="blob:"]'),
         30, "the job among the recent jobs")
    driver.execute_script("window.scrollTo(0, 0)")
    if screenshot:
        driver.save_screenshot(screenshot)
    # With a key, the 401s that made the page ask for it are expected; nothing else is.
    errors = [error for error in browser_errors(driver) if not (key and "status of 401" in error)]
    assert not errors, f"console errors: {errors}"
    return data


def test_page_without_key(args, work):
    daemon = Daemon(args.binary, args.checkpoints, work)
    driver = None
    try:
        status, headers, page = daemon.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html"), headers
        driver = browser(work)
        driver.get(daemon.url + "/")
        assert driver.title == "rind"
        generate_in_page(driver, daemon, None, os.path.join(args.screenshots, "web.png"))
        assert driver.find_element(By.ID, "key-panel").get_attribute("hidden") is not None, "no key is asked for"
    finally:
        if driver:
            driver.quit()
        daemon.stop()


def test_page_with_api_key(args, work):
    key = "web-test-key-5f1c"
    key_file = os.path.join(work, "api-key")
    with open(key_file, "w") as handle:
        handle.write(key + "\n")
    daemon = Daemon(args.binary, args.checkpoints, work, ["--api-key-file", key_file])
    driver = None
    try:
        # The page and its files load without the key; the API does not.
        assert daemon.get("/")[0] == 200 and daemon.get("web/app.js")[0] == 200
        try:
            daemon.get("models")
            raise AssertionError("GET /models answered without the key")
        except urllib.error.HTTPError as error:
            assert error.code == 401, error.code

        driver = browser(work)
        driver.get(daemon.url + "/")
        panel = wait(driver, conditions.visibility_of_element_located((By.ID, "key-panel")), 30, "the key panel")
        field = driver.find_element(By.ID, "api-key")
        assert driver.find_element(By.CSS_SELECTOR, "label[for=api-key]").text == "API key"
        field.send_keys("wrong-key")
        driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
        wait(driver, lambda d: "refused" in d.find_element(By.ID, "key-message").text, 30, "the wrong key to be refused")
        field = driver.find_element(By.ID, "api-key")
        field.send_keys(key)
        driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
        wait(driver, conditions.invisibility_of_element(panel), 30, "the key panel to close")
        generate_in_page(driver, daemon, key, os.path.join(args.screenshots, "web-api-key.png"))

        # Typed once: a reload asks no more.
        driver.refresh()
        model_select = Select(wait(driver, conditions.presence_of_element_located((By.ID, "model")), 30, "the model list"))
        wait(driver, lambda d: len(model_select.options) > 0, 30, "the models after a reload")
        assert driver.find_element(By.ID, "key-panel").get_attribute("hidden") is not None, "the key is asked again"
        # No 401 after the reload: the stored key was sent from the first call on.
        errors = browser_errors(driver)
        assert not errors, f"console errors: {errors}"
    finally:
        if driver:
            driver.quit()
        daemon.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=".build/release/rind")
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--screenshots", default=None, help="folder for the screenshots (default: a temporary one)")
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)
    args.screenshots = os.path.abspath(args.screenshots or tempfile.mkdtemp(prefix="rind-web-shots-"))
    os.makedirs(args.screenshots, exist_ok=True)
    passed = failed = 0
    for test in (test_page_without_key, test_page_with_api_key):
        work = tempfile.mkdtemp(prefix=f"rind-web-{test.__name__}-")
        started = time.monotonic()
        try:
            test(args, work)
            passed += 1
            print(f"PASS {test.__name__} ({time.monotonic() - started:.1f} s)", flush=True)
            shutil.rmtree(work, ignore_errors=True)
        except Exception:
            failed += 1
            print(f"FAIL {test.__name__} ({time.monotonic() - started:.1f} s); its files are in {work}", flush=True)
            traceback.print_exc()
            log = os.path.join(work, "daemon.log")
            if os.path.exists(log):
                print("--- daemon log (last 40 lines) ---")
                print("".join(open(log).readlines()[-40:]))
    print(f"screenshots in {args.screenshots}")
    print(f"web: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
