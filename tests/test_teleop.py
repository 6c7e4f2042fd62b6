"""Teleop devices: each maps scripted raw input to the documented twist, gripper and events."""

import sys

import numpy as np
import pytest

from serl.robot.teleop import (
    DISCONNECT,
    GRIP_CLOSE,
    GRIP_OPEN,
    GRIP_STAY,
    DeviceDisconnected,
    DeviceUnavailable,
    Event,
    Gamepad,
    GamepadReading,
    Keyboard,
    ScriptedSource,
    SpaceMouse,
    SpaceMouseReading,
    TeleopCommand,
    command_to_action,
    make_device,
)


def test_spacemouse_maps_axes_like_the_original_and_buttons_to_the_gripper() -> None:
    source = ScriptedSource(
        [
            SpaceMouseReading(x=0.5, y=-0.25, z=0.1, roll=0.2, pitch=-0.3, yaw=0.4),
            SpaceMouseReading(buttons=(1, 0)),
            SpaceMouseReading(buttons=(0, 1)),
            SpaceMouseReading(buttons=(0, 0)),
        ]
    )
    device = SpaceMouse(source)
    first = device.read()
    np.testing.assert_allclose(first.twist, [0.25, 0.5, 0.1, -0.2, 0.3, -0.4])
    assert first.gripper == GRIP_STAY and not first.events
    assert [device.read().gripper for _ in range(3)] == [GRIP_CLOSE, GRIP_OPEN, GRIP_STAY]


def test_spacemouse_event_buttons_fire_once_per_press() -> None:
    press_success = SpaceMouseReading(buttons=(0, 0, 1, 0, 0, 0, 0))
    press_toggle = SpaceMouseReading(buttons=(0, 0, 0, 0, 0, 1, 0))
    idle = SpaceMouseReading(buttons=(0,) * 7)
    source = ScriptedSource([press_success, press_success, idle, press_toggle, idle, press_toggle])
    device = SpaceMouse(source)
    events = [device.read().events for _ in range(6)]
    assert events == [
        {Event.SUCCESS},
        set(),
        set(),
        {Event.TAKE_OVER},
        set(),
        {Event.RELEASE},
    ]


def test_gamepad_sticks_dpad_bumpers_and_face_buttons() -> None:
    # left stick pushed forward and left, right stick down and right, d-pad right/up
    axes = (-0.5, -1.0, 0.0, 1.0, 0.6, 0.0)
    source = ScriptedSource(
        [
            GamepadReading(axes=axes, hat=(1, 1)),
            GamepadReading(axes=(0.05, -0.05, 0, 0, 0, 0)),  # drift inside the dead zone
            GamepadReading(buttons=(0, 0, 0, 0, 0, 1, 0, 0)),  # right bumper
            GamepadReading(buttons=(1, 0, 0, 0, 1, 0, 0, 0)),  # A + left bumper
            GamepadReading(buttons=(0, 1, 1, 1, 0, 0, 0, 1)),  # B, X, Y, Start
        ]
    )
    device = Gamepad(source, stick_deadzone=0.1)
    moved = device.read()
    zone = lambda v: np.sign(v) * (abs(v) - 0.1) / 0.9  # noqa: E731
    np.testing.assert_allclose(
        moved.twist, [1.0, zone(0.5), zone(-0.6), 1.0, 1.0, -1.0], atol=1e-12
    )
    assert device.read().magnitude() == 0.0
    assert device.read().gripper == GRIP_CLOSE
    both = device.read()
    assert both.gripper == GRIP_OPEN and both.events == {Event.SUCCESS}
    assert device.read().events == {Event.FAILURE, Event.RERECORD, Event.TAKE_OVER, Event.STOP}


def test_keyboard_held_keys_move_and_opposites_cancel() -> None:
    source = ScriptedSource(
        [
            frozenset({"w", "a", "up"}),
            frozenset({"w", "s", "q"}),
            frozenset({"c"}),
            frozenset({"c", "o"}),
            frozenset({"o", "enter"}),
            frozenset({"o", "enter", "t"}),
            frozenset({"backspace", "n", "esc", "t"}),
        ]
    )
    device = Keyboard(source)
    np.testing.assert_array_equal(device.read().twist, [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(device.read().twist, [0, 0, 0, 0, 0, 1])
    assert device.read().gripper == GRIP_CLOSE
    assert device.read().gripper == GRIP_STAY  # both: ambiguous, hold
    first = device.read()
    assert first.gripper == GRIP_OPEN and first.events == {Event.SUCCESS}
    assert device.read().events == {Event.TAKE_OVER}  # enter still held: no second success
    assert device.read().events == {Event.FAILURE, Event.RERECORD, Event.STOP}  # t still held


def test_reset_forgets_the_take_over_toggle() -> None:
    source = ScriptedSource([frozenset({"t"}), frozenset(), frozenset({"t"})])
    device = Keyboard(source)
    assert device.read().events == {Event.TAKE_OVER}
    device.read()
    device.reset()
    assert device.read().events == {Event.TAKE_OVER}


def test_an_unplugged_device_raises_a_clear_error() -> None:
    device = make_device("spacemouse", source=ScriptedSource([SpaceMouseReading(), DISCONNECT]))
    device.read()
    with pytest.raises(DeviceDisconnected, match="spacemouse: scripted device unplugged"):
        device.read()
    with pytest.raises(DeviceDisconnected):
        device.read()  # stays gone


def test_a_script_holds_its_last_reading_unless_told_to_end() -> None:
    held = Keyboard(ScriptedSource([frozenset({"w"})]))
    assert [held.read().twist[0] for _ in range(3)] == [1.0, 1.0, 1.0]
    ending = Keyboard(ScriptedSource([frozenset({"w"})], hold_last=False))
    ending.read()
    with pytest.raises(DeviceDisconnected, match="ended"):
        ending.read()


def test_real_drivers_explain_a_missing_library(monkeypatch) -> None:
    for module in ("pyspacemouse", "pygame", "pynput", "pynput.keyboard"):
        monkeypatch.setitem(sys.modules, module, None)  # None in sys.modules: ImportError
    for name in ("spacemouse", "gamepad", "keyboard"):
        with pytest.raises(DeviceUnavailable, match=r"serl\[teleop\]"):
            make_device(name)
    with pytest.raises(ValueError, match="unknown teleop device"):
        make_device("joystick")


def test_command_to_action_layouts() -> None:
    cmd = TeleopCommand(twist=np.array([1.0, -0.5, 0.2, 0.3, 0.0, -1.0]), gripper=GRIP_CLOSE)
    np.testing.assert_allclose(command_to_action(cmd, 4, scale=0.5), [0.5, -0.25, 0.1, 1.0])
    np.testing.assert_allclose(command_to_action(cmd, 3), [1.0, -0.5, 0.2])
    np.testing.assert_allclose(command_to_action(cmd, 7)[-1], 1.0)
    assert command_to_action(cmd, 6).shape == (6,)
    with pytest.raises(ValueError, match="5-D"):
        command_to_action(cmd, 5)
